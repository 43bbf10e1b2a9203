package chain

import (
	"context"
	"fmt"
	"strings"

	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/plugins/pkg/ip"
	"github.com/containernetworking/plugins/pkg/netlinksafe"
	"github.com/containernetworking/plugins/pkg/ns"

	"github.com/underpool/underpool/routes"
)

// CmdCheck verifies that the delegate's link and the addresses and routes ADD set are
// still in place, and that ipamd still records the attachment.
func CmdCheck(args *skel.CmdArgs) error {
	conf, err := LoadConf(args.StdinData, true)
	if err != nil {
		return configError(err)
	}
	if conf.PrevResult == nil {
		return types.NewError(types.ErrInvalidNetworkConfig, "CHECK needs prevResult: the runtime must pass the ADD result", "")
	}
	prev, err := current.NewResultFromResult(conf.PrevResult)
	if err != nil {
		return configError(fmt.Errorf("prevResult: %v", err))
	}
	ctx, cancel := context.WithTimeout(context.Background(), conf.IPAM.timeout)
	defer cancel()
	// the delegate checks its link and addresses; routes are ours (some live in the
	// interface's own table, which delegates' CHECK does not look at)
	delete(conf.rawPrevResult, "routes")
	withoutHostLink(conf.rawPrevResult, args)
	delegateConf, err := conf.DelegateConf()
	if err != nil {
		return configError(err)
	}
	if err := invoke.DelegateCheck(ctx, conf.DelegateType(), delegateConf, nil); err != nil {
		return wrap("delegate %s CHECK: %v", conf.DelegateType(), err)
	}
	alloc, err := lookup(ctx, conf, args)
	if err != nil {
		return err
	}
	for _, want := range alloc.IPs {
		if !hasIP(prev, want.Address) {
			return wrap("ipamd holds %s for %s but the ADD result does not list it", want.Address, args.IfName)
		}
	}
	if conf.RDMA.Mode != "" {
		if err := newAttacher(conf.RDMA).Check(args.ContainerID, args.IfName, args.Netns, conf.rdmaWant()); err != nil {
			return wrap("RDMA: %v", err)
		}
	}
	if err := checkHostLink(conf, args, prev); err != nil {
		return err
	}
	return ns.WithNetNSPath(args.Netns, func(ns.NetNS) error {
		var ips []*current.IPConfig
		for _, c := range prev.IPs {
			if c.Interface != nil && *c.Interface < len(prev.Interfaces) && prev.Interfaces[*c.Interface].Name == args.IfName {
				ips = append(ips, c)
			}
		}
		if err := ip.ValidateExpectedInterfaceIPs(args.IfName, ips); err != nil {
			return wrap("addresses on %s differ from the ADD result: %v", args.IfName, err)
		}
		link, err := netlinksafe.LinkByName(args.IfName)
		if err != nil {
			return wrap("%s is missing from the pod netns: %v", args.IfName, err)
		}
		if diffs := routes.Verify(link, planFromResult(conf, args.IfName, prev)); len(diffs) > 0 {
			return wrap("routing on %s differs from the ADD result: %s", args.IfName, strings.Join(diffs, "; "))
		}
		return nil
	})
}

func hasIP(r *current.Result, cidr string) bool {
	for _, c := range r.IPs {
		if c.Address.String() == cidr {
			return true
		}
	}
	return false
}
