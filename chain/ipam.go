package chain

import (
	"context"
	"fmt"
	"net"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"

	"github.com/underpool/underpool/ipamd/rpc"
)

// allocate asks ipamd for the attachment's addresses.
func allocate(ctx context.Context, conf *NetConf, args *skel.CmdArgs) (*rpc.AllocateResponse, error) {
	return askIpamd(ctx, conf, args, false)
}

// lookup asks ipamd what the attachment holds, never allocating (CHECK).
func lookup(ctx context.Context, conf *NetConf, args *skel.CmdArgs) (*rpc.AllocateResponse, error) {
	return askIpamd(ctx, conf, args, true)
}

func askIpamd(ctx context.Context, conf *NetConf, args *skel.CmdArgs, lookupOnly bool) (*rpc.AllocateResponse, error) {
	pod, err := podFromArgs(args.Args)
	if err != nil {
		return nil, configError(err)
	}
	resp, err := rpc.NewClient(conf.IPAM.Socket).Allocate(ctx, &rpc.AllocateRequest{
		ContainerID: args.ContainerID, IfName: args.IfName, Network: conf.Name, Pod: pod,
		IPv4Pools: conf.IPAM.IPv4Pools, IPv6Pools: conf.IPAM.IPv6Pools,
		RequestedIPs: conf.requestedIPs(), LookupOnly: lookupOnly,
	})
	if err != nil {
		what := "allocating addresses"
		if lookupOnly {
			what = "asking ipamd what the attachment holds"
		}
		return nil, cniError(what, err)
	}
	return resp, nil
}

// release frees the attachment's addresses. An unreachable ipamd is not an error: the
// address comes back through ipamd's garbage collection once the pod is gone, and a DEL
// that fails forever would block the pod's removal.
func release(ctx context.Context, conf *NetConf, args *skel.CmdArgs, log logFunc, conflicts ...rpc.Conflict) error {
	pod, _ := podFromArgs(args.Args) // a DEL with odd args still releases by container ID
	err := rpc.NewClient(conf.IPAM.Socket).Release(ctx, &rpc.ReleaseRequest{
		ContainerID: args.ContainerID, IfName: args.IfName, Pod: pod, Conflicts: conflicts})
	if err != nil && isUnreachable(err) {
		log("ipamd unreachable on DEL; its GC will reclaim the address", err)
		return nil
	}
	if err != nil {
		return cniError("releasing addresses", err)
	}
	return nil
}

type logFunc func(msg string, err error)

// ipamResult turns ipamd's answer into CNI IP configs and routes. ifIndex is the index of
// the pod interface in the result's Interfaces, or nil for an IPAM-only result.
func ipamResult(resp *rpc.AllocateResponse, ifIndex *int, defaultRoute bool) (*current.Result, error) {
	res := &current.Result{}
	for _, ip := range resp.IPs {
		addr, network, err := net.ParseCIDR(ip.Address)
		if err != nil {
			return nil, fmt.Errorf("ipamd returned a bad address %q: %v", ip.Address, err)
		}
		cfg := &current.IPConfig{Interface: ifIndex, Address: net.IPNet{IP: addr, Mask: network.Mask}}
		if ip.Gateway != "" {
			cfg.Gateway = net.ParseIP(ip.Gateway)
			if defaultRoute {
				res.Routes = append(res.Routes, defaultVia(cfg.Gateway))
			}
		}
		res.IPs = append(res.IPs, cfg)
	}
	for _, r := range resp.Routes {
		_, dst, err := net.ParseCIDR(r.Dst)
		if err != nil {
			return nil, fmt.Errorf("pool route dst %q is not a CIDR: %v", r.Dst, err)
		}
		route := &types.Route{Dst: *dst}
		if r.Gw != "" {
			route.GW = net.ParseIP(r.Gw)
		}
		res.Routes = append(res.Routes, route)
	}
	return res, nil
}

func defaultVia(gw net.IP) *types.Route {
	if gw.To4() != nil {
		return &types.Route{Dst: net.IPNet{IP: net.IPv4zero, Mask: net.CIDRMask(0, 32)}, GW: gw}
	}
	return &types.Route{Dst: net.IPNet{IP: net.IPv6zero, Mask: net.CIDRMask(0, 128)}, GW: gw}
}
