package chain

import (
	"errors"
	"time"

	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/plugins/pkg/ns"
	"go.uber.org/zap"

	"github.com/underpool/underpool/chain/ipamplugin"
	"github.com/underpool/underpool/netplan"
	"github.com/underpool/underpool/rpc"
	"github.com/underpool/underpool/underlay"
)

// settleTimeout bounds the wait for IPv6 duplicate address detection.
const settleTimeout = 10 * time.Second

// addition is one ADD of the meta-plugin in progress: what each step made, and how to
// take it back.
type addition struct {
	*session
	undo  undoStack
	took  phases
	alloc netplan.Allocation
	// delegateConf is rendered once: the delegate's DEL on unwind gets the config of its ADD.
	delegateConf []byte
	result       *current.Result
	ifIndex      int // of the pod interface in result.Interfaces
	// holdsDefault: the interface holds the pod's default route of every family it has
	// (configureRoutes), which host connectivity's automatic rule asks for
	holdsDefault bool
	// conflicts are addresses another host answered for: the unwind releases them as
	// such, so ipamd keeps them out of allocation and the runtime's retry gets others.
	conflicts []rpc.Conflict
}

// add attaches a pod: addresses from ipamd, the link from the delegate, then addresses
// and routes inside the pod, the host link and the RDMA device. Any failure undoes what
// was done, leaving no link and no allocation behind.
func add(s *session) error {
	a := &addition{session: s, undo: undoStack{log: s.log}, took: phases{start: time.Now()}}
	steps := []func() error{a.allocate, a.attachUplink, a.runDelegate, a.configurePod, a.connectHost, a.attachRDMA}
	for _, step := range steps {
		if err := step(); err != nil {
			a.undo.unwind()
			s.log.Info("ADD undone", zap.Object("ms", &a.took))
			return err
		}
	}
	s.log.Info("ADD done", zap.Stringer("result", ipamplugin.Summary{Result: a.result}), zap.Object("ms", &a.took))
	return types.PrintResult(a.result, s.conf.CNIVersion)
}

func (a *addition) allocate() error {
	alloc, err := ipamplugin.Allocate(a.ctx, a.ipam(), a.args)
	a.took.mark("ipamd")
	if err != nil {
		return err
	}
	a.undo.push("releasing the addresses", func() error {
		return ipamplugin.Release(a.ctx, a.ipam(), a.args, a.log, a.conflicts...)
	})
	// the network's routes join the allocation's before anything is made in the pod: a
	// route the attachment cannot carry fails here, with only the addresses to give back
	if a.alloc, err = a.conf.podAllocation(alloc); err != nil {
		return invalidConfig(err)
	}
	return nil
}

// attachUplink puts the attachment on its uplink before the delegate runs: the VLAN its
// pools or network name, on the master or the bond, each made when missing, and has the
// delegate hang the pod's link off it.
func (a *addition) attachUplink() error {
	plan, err := planUplink(a.conf, a.alloc.Addresses)
	if err != nil {
		return invalidConfig(err)
	}
	if plan.empty() {
		a.conf.withUplink("", plan.SriovVlan)
		return nil
	}
	store := newUplinkStore()
	rec, err := joinUplink(a.ctx, store, plan, uplinkRecord{Network: a.conf.Name, ContainerID: a.args.ContainerID, IfName: a.args.IfName}, a.log)
	a.took.mark("uplink")
	if err != nil {
		return internalError("the uplink: %v", err)
	}
	a.undo.push("giving back the uplink", func() error {
		return leaveUplink(a.ctx, store, a.args.ContainerID, a.args.IfName, a.log)
	})
	a.conf.withUplink(rec.Master, 0)
	return nil
}

func (a *addition) runDelegate() error {
	var err error
	if a.delegateConf, err = a.delegateConfig(); err != nil {
		return internalError("rendering delegate config: %v", err)
	}
	restore, err := a.noDelegateDAD()
	if err != nil {
		return internalError("preparing the pod netns for delegate %s: %v", a.conf.DelegateType(), err)
	}
	raw, err := invoke.DelegateAdd(a.ctx, a.conf.DelegateType(), a.delegateConf, nil)
	restore()
	a.took.mark("delegate")
	if err != nil {
		return internalError("delegate %s ADD: %v", a.conf.DelegateType(), err)
	}
	a.undo.push("delegate DEL", func() error {
		return invoke.DelegateDel(a.ctx, a.conf.DelegateType(), a.delegateConf, nil)
	})
	if a.result, err = current.NewResultFromResult(raw); err != nil {
		return internalError("reading the delegate's result: %v", err)
	}
	if a.ifIndex = podInterface(a.result, a.args.IfName); a.ifIndex < 0 {
		return internalError("delegate result: no interface %s in the pod netns", a.args.IfName)
	}
	a.result.IPs = ipamplugin.IPs(a.alloc.Addresses, &a.ifIndex)
	return nil
}

// neighbourChecks is the config the pod link's checks run with: on a link that resolves no
// neighbours (an ipvlan in l3 or l3s mode: its addresses are routed to the node, never
// resolved on the segment, and no ARP or NDP leaves it) the conflict probe, the gateway
// check and the announcement have nothing to ask and nobody to tell, so they are off.
func (a *addition) neighbourChecks(ifName string) (*NetConf, error) {
	speaks, err := underlay.SpeaksARP(ifName)
	if err != nil || speaks {
		return a.conf, err
	}
	a.log.Info("the pod link resolves no neighbours (ipvlan l3/l3s): no conflict probe, gateway check or announcement on it",
		zap.String("ifName", ifName), zap.String("delegate", a.conf.DelegateType()))
	off := false
	conf := *a.conf
	conf.Checks.IPConflict, conf.Checks.Gateway, conf.Checks.Announce = &off, &off, &off
	return &conf, nil
}

// noDelegateDAD keeps a delegate that configures the addresses itself (ipvlan) from running
// duplicate address detection on them: it would wait for DAD and fail on a duplicate as
// its own error, not as the conflict (code 11, quarantine) ADD reports when it checks the
// addresses again itself. The pod netns' default accept_dad, which the delegate's new link
// starts with, is 0 while it runs; restore puts it back.
func (a *addition) noDelegateDAD() (restore func(), err error) {
	restore = func() {}
	if !a.conf.DelegateConfiguresAddresses() || !a.alloc.HasFamily(false) {
		return restore, nil
	}
	var old string
	err = ns.WithNetNSPath(a.args.Netns, func(ns.NetNS) error {
		old, err = underlay.SetDefaultAcceptDAD("0")
		return err
	})
	if err != nil || old == "" {
		return restore, err
	}
	return func() {
		err := ns.WithNetNSPath(a.args.Netns, func(ns.NetNS) error {
			_, err := underlay.SetDefaultAcceptDAD(old)
			return err
		})
		if err != nil {
			a.log.Warn("restoring the pod netns' default accept_dad", zap.Error(err))
		}
	}, nil
}

// delegateConfig is the delegate's config for this ADD: a delegate that insists on
// configuring the addresses itself gets them as its prevResult.
func (a *addition) delegateConfig() ([]byte, error) {
	if !a.conf.DelegateConfiguresAddresses() {
		return a.conf.DelegateConf()
	}
	return a.conf.DelegateConfWith(&current.Result{CNIVersion: current.ImplementedSpecVersion, IPs: ipamplugin.IPs(a.alloc.Addresses, nil)})
}

// configurePod sets the interface's MAC, addresses and routes in the pod netns, under
// the underlay checks. The IPv4 conflict probe starts once the link is up and listens
// while addresses and routes are set; ADD waits for what is left of its window before
// anything outside the pod hears of the address (gateway check, announcement, host
// routes), so the protection holds and only the remainder is waited for.
func (a *addition) configurePod() error {
	// rules and the interface's table outlive the link: pushed before a half-done
	// routing setup can leave some behind
	a.undo.push("removing routing rules", func() error { return cleanPod(a.conf, a.args.Netns, a.args.IfName) })
	ifName := a.args.IfName
	var warnings []error
	host, err := ns.GetCurrentNS()
	if err != nil {
		return internalError("the node's netns: %v", err)
	}
	defer host.Close()
	err = ns.WithNetNSPath(a.args.Netns, func(ns.NetNS) error {
		if a.conf.DelegateConfiguresAddresses() {
			// configured again below, under the conflict probe and with DAD sized to
			// its window (the delegate's own link-up has announced them once already)
			if err := underlay.TakeBackAddresses(ifName); err != nil {
				return err
			}
		}
		mac, err := prepareLink(a.conf, ifName, a.alloc)
		if err != nil {
			return err
		}
		a.result.Interfaces[a.ifIndex].Mac = mac
		a.took.mark("link")
		conf, err := a.neighbourChecks(ifName)
		if err != nil {
			return err
		}
		v4, err := startIPv4Probe(conf, ifName, a.alloc.Addresses, host)
		if err != nil {
			return err
		}
		defer v4.close()
		if err := addAddresses(ifName, a.alloc.Addresses); err != nil {
			return err
		}
		a.took.mark("addresses")
		if err := awaitIPv6(a.conf, ifName, a.alloc.Addresses); err != nil {
			return err
		}
		a.took.mark("dad")
		if a.result.Routes, a.holdsDefault, err = configureRoutes(a.conf, ifName, a.alloc); err != nil {
			return err
		}
		a.took.mark("routes")
		if err := v4.wait(a.log); err != nil {
			return err
		}
		a.took.mark("probe")
		if err := checkGateways(conf, ifName, a.alloc.Addresses); err != nil {
			return err
		}
		warnings = announce(conf, ifName, a.alloc.Addresses, v4)
		return nil
	})
	a.took.mark("announce")
	var conflict *conflictError
	if errors.As(err, &conflict) {
		a.conflicts = conflict.conflicts
		// the runtime's retry gets another address: "try again later" says so
		return tryAgainLater(conflict)
	}
	if err != nil {
		return internalError("configuring %s: %v", ifName, err)
	}
	for _, w := range warnings {
		a.log.Warn("announcing the address", zap.Error(w))
	}
	return nil
}

// connectHost joins a macvlan/ipvlan pod to its own node, when wanted.
func (a *addition) connectHost() error {
	if !a.conf.HostConnectivity.wanted(a.conf.DelegateType(), a.holdsDefault) {
		return nil
	}
	a.undo.push("removing the host veth", func() error { return removeHostLink(a.args) })
	veths, err := setupHostLink(a.conf, a.args, a.alloc.Addrs())
	if err != nil {
		return internalError("connecting the pod to its node: %v", err)
	}
	a.result.Interfaces = append(a.result.Interfaces, veths...)
	a.log.Info("host veth up", zap.String("host", veths[0].Name), zap.String("pod", veths[1].Name))
	a.took.mark("host")
	return nil
}

func (a *addition) attachRDMA() error {
	if a.conf.RDMA.Mode == "" {
		return nil
	}
	dev, err := newAttacher(a.conf.RDMA).Attach(a.args.ContainerID, a.args.IfName, a.args.Netns, a.conf.rdmaWant())
	if err != nil {
		return internalError("RDMA: %v", err)
	}
	a.log.Info("RDMA device placed", zap.String("device", dev), zap.String("mode", a.conf.RDMA.Mode))
	return nil
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
