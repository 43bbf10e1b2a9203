package chain

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/plugins/pkg/ns"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/underpool/underpool/ipamd/rpc"
)

// settleTimeout bounds the wait for IPv6 duplicate address detection.
const settleTimeout = 10 * time.Second

// CmdAdd attaches a pod: addresses from ipamd, the link from the delegate, then addresses
// and routes inside the pod. Any failure undoes what was done, leaving no link and no
// allocation behind.
func CmdAdd(args *skel.CmdArgs) error {
	s, err := startSession(args, true, "ADD", "underpool")
	if err != nil {
		return err
	}
	defer s.close()
	conf, log := s.conf, s.log

	t := &phases{start: time.Now()}
	result, err := add(s.ctx, conf, args, log, t)
	if err != nil {
		log.Error("ADD failed", zap.Error(err), zap.Object("ms", t))
		return err
	}
	log.Info("ADD done", zap.Stringer("result", resultSummary{result}), zap.Object("ms", t))
	return types.PrintResult(result, conf.CNIVersion)
}

func add(ctx context.Context, conf *NetConf, args *skel.CmdArgs, log *zap.Logger, t *phases) (*current.Result, error) {
	alloc, err := allocate(ctx, conf, args)
	t.mark("ipamd")
	if err != nil {
		return nil, err
	}
	undo := func(what string, cause error, conflicts ...rpc.Conflict) error {
		if err := release(ctx, conf, args, func(msg string, e error) { log.Warn(msg, zap.Error(e)) }, conflicts...); err != nil {
			log.Error("releasing after a failed ADD", zap.Error(err))
		}
		return wrap("%s: %v", what, cause)
	}

	delegateConf, err := conf.DelegateConf()
	if err != nil {
		return nil, undo("rendering delegate config", err)
	}
	raw, err := invoke.DelegateAdd(ctx, conf.DelegateType(), delegateConf, nil)
	t.mark("delegate")
	if err != nil {
		return nil, undo(fmt.Sprintf("delegate %s ADD", conf.DelegateType()), err)
	}
	undoDelegate := func(what string, cause error, conflicts ...rpc.Conflict) error {
		if err := removeHostLink(args); err != nil {
			log.Error("removing the host veth after a failed ADD", zap.Error(err))
		}
		if err := cleanPod(conf, args.Netns, args.IfName); err != nil {
			log.Error("removing routing rules after a failed ADD", zap.Error(err))
		}
		if err := invoke.DelegateDel(ctx, conf.DelegateType(), delegateConf, nil); err != nil {
			log.Error("delegate DEL after a failed ADD", zap.Error(err))
		}
		return undo(what, cause, conflicts...)
	}
	result, err := current.NewResultFromResult(raw)
	if err != nil {
		return nil, undoDelegate("reading the delegate's result", err)
	}
	ifIndex := podInterface(result, args.IfName)
	if ifIndex < 0 {
		return nil, undoDelegate("delegate result", fmt.Errorf("no interface %s in the pod netns", args.IfName))
	}
	addressing, err := ipamResult(alloc, &ifIndex, false)
	if err != nil {
		return nil, undoDelegate("ipamd result", err)
	}
	intent, err := routingIntent(conf, args.IfName, alloc)
	if err != nil {
		return nil, undoDelegate("ipamd result", err)
	}
	result.IPs = addressing.IPs
	var warnings []error
	var holdsDefault bool
	err = ns.WithNetNSPath(args.Netns, func(ns.NetNS) error {
		mac, err := prepareLink(conf, args.IfName, intent.Addresses)
		if err != nil {
			return err
		}
		result.Interfaces[ifIndex].Mac = mac
		if err := probeIPv4Conflicts(conf, args.IfName, intent.Addresses); err != nil {
			return err
		}
		if err := addAddresses(args.IfName, result); err != nil {
			if c := ipv6Conflicts(conf, args.IfName, intent.Addresses); c != nil {
				return c
			}
			return err
		}
		if err := checkGateways(conf, args.IfName, intent.Addresses); err != nil {
			return err
		}
		if result.Routes, holdsDefault, err = configureRoutes(conf, args.IfName, intent); err != nil {
			return err
		}
		warnings = announce(conf, args.IfName, intent.Addresses)
		return nil
	})
	t.mark("pod")
	var conflict *conflictError
	if errors.As(err, &conflict) {
		_ = undoDelegate("", err, conflict.conflicts...)
		// the runtime's retry gets another address: "try again later" says so
		return nil, types.NewError(types.ErrTryAgainLater, conflict.Error(), "")
	}
	if err != nil {
		return nil, undoDelegate("configuring "+args.IfName, err)
	}
	for _, w := range warnings {
		log.Warn("announcing the address", zap.Error(w))
	}
	if conf.HostConnectivity.wanted(conf.DelegateType(), holdsDefault) {
		var podAddrs []netip.Addr
		for _, a := range intent.Addresses {
			podAddrs = append(podAddrs, a.Prefix.Addr())
		}
		veths, err := setupHostLink(conf, args, podAddrs)
		if err != nil {
			return nil, undoDelegate("connecting the pod to its node", err)
		}
		result.Interfaces = append(result.Interfaces, veths...)
		log.Info("host veth up", zap.String("host", veths[0].Name), zap.String("pod", veths[1].Name))
		t.mark("host")
	}
	if conf.RDMA.Mode != "" {
		dev, err := newAttacher(conf.RDMA).Attach(args.ContainerID, args.IfName, args.Netns, conf.rdmaWant())
		if err != nil {
			return nil, undoDelegate("RDMA", err)
		}
		log.Info("RDMA device placed", zap.String("device", dev), zap.String("mode", conf.RDMA.Mode))
	}
	return result, nil
}

// podInterface returns the index of the sandbox interface named ifName, or -1.
func podInterface(r *current.Result, ifName string) int {
	for i, itf := range r.Interfaces {
		if itf.Name == ifName && itf.Sandbox != "" {
			return i
		}
	}
	return -1
}

type resultSummary struct{ r *current.Result }

func (s resultSummary) String() string {
	out := ""
	for _, ip := range s.r.IPs {
		out += ip.Address.String() + " "
	}
	return out
}

// phases times the steps of one ADD, logged with its outcome so an operator sees where
// an ADD spends its time (ipamd, the delegate, the pod's netns, the host link).
type phases struct {
	start, last time.Time
	names       []string
	took        []time.Duration
}

func (p *phases) mark(name string) {
	now := time.Now()
	if p.last.IsZero() {
		p.last = p.start
	}
	p.names, p.took, p.last = append(p.names, name), append(p.took, now.Sub(p.last)), now
}

func (p *phases) MarshalLogObject(enc zapcore.ObjectEncoder) error {
	for i, n := range p.names {
		enc.AddFloat64(n, float64(p.took[i].Microseconds())/1000)
	}
	enc.AddFloat64("total", float64(time.Since(p.start).Microseconds())/1000)
	return nil
}
