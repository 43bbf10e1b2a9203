package chain

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/plugins/pkg/ip"
	"github.com/containernetworking/plugins/pkg/ns"

	"github.com/underpool/underpool/chain/ipamplugin"
	"github.com/underpool/underpool/underlay"
)

// check verifies that the delegate's link and the addresses and routes ADD set are
// still in place, and that ipamd still records the attachment.
func check(s *session) error {
	conf, args := s.conf, s.args
	prev, err := prevResult(conf)
	if err != nil {
		return err
	}
	// the delegate checks its link and addresses; routes are ours (some live in the
	// interface's own table, which delegates' CHECK does not look at)
	delete(conf.rawPrevResult, "routes")
	withoutHostLink(conf.rawPrevResult, args)
	s.recordedUplink()
	delegateConf, err := conf.DelegateConf()
	if err != nil {
		return invalidConfig(err)
	}
	if err := invoke.DelegateCheck(s.ctx, conf.DelegateType(), delegateConf, nil); err != nil {
		return internalError("delegate %s CHECK: %v", conf.DelegateType(), err)
	}
	if err := checkHeld(s, prev); err != nil {
		return err
	}
	if conf.RDMA.Mode != "" {
		if err := newAttacher(conf.RDMA).Check(args.ContainerID, args.IfName, args.Netns, conf.rdmaWant()); err != nil {
			return internalError("RDMA: %v", err)
		}
	}
	if err := checkHostLink(conf, args, prev); err != nil {
		return err
	}
	return ns.WithNetNSPath(args.Netns, func(ns.NetNS) error { return checkPod(conf, args.IfName, prev) })
}

// prevResult is the ADD result the runtime passes to CHECK.
func prevResult(conf *NetConf) (*current.Result, error) {
	if conf.PrevResult == nil {
		return nil, types.NewError(types.ErrInvalidNetworkConfig, "CHECK needs prevResult: the runtime must pass the ADD result", "")
	}
	prev, err := current.NewResultFromResult(conf.PrevResult)
	if err != nil {
		return nil, invalidConfig(fmt.Errorf("prevResult: %v", err))
	}
	return prev, nil
}

// checkHeld fails when ipamd holds an address for the attachment that the ADD result
// does not list.
func checkHeld(s *session, prev *current.Result) error {
	alloc, err := ipamplugin.Lookup(s.ctx, s.ipam(), s.args)
	if err != nil {
		return err
	}
	var listed []netip.Prefix
	for _, c := range prev.IPs {
		if p, ok := prefixOf(c.Address); ok {
			listed = append(listed, p)
		}
	}
	for _, want := range alloc.Addresses {
		if !slices.Contains(listed, want.Prefix) {
			return internalError("ipamd holds %s for %s but the ADD result does not list it", want.Prefix, s.args.IfName)
		}
	}
	return nil
}

// checkPod runs in the pod netns: the interface's addresses and routing match the result.
func checkPod(conf *NetConf, ifName string, prev *current.Result) error {
	var ips []*current.IPConfig
	for _, c := range prev.IPs {
		if c.Interface != nil && *c.Interface < len(prev.Interfaces) && prev.Interfaces[*c.Interface].Name == ifName {
			ips = append(ips, c)
		}
	}
	if err := ip.ValidateExpectedInterfaceIPs(ifName, ips); err != nil {
		return internalError("addresses on %s differ from the ADD result: %v", ifName, err)
	}
	diffs, err := underlay.Verify(ifName, planFromResult(conf, ifName, prev))
	if err != nil {
		return internalError("%s is missing from the pod netns: %v", ifName, err)
	}
	if len(diffs) > 0 {
		return internalError("routing on %s differs from the ADD result: %s", ifName, strings.Join(diffs, "; "))
	}
	return nil
}
