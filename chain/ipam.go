package chain

import (
	"context"

	"github.com/containernetworking/cni/pkg/skel"

	"github.com/underpool/underpool/ipamd/rpc"
	"github.com/underpool/underpool/netplan"
)

// allocate asks ipamd for the attachment's addresses.
func allocate(ctx context.Context, conf *NetConf, args *skel.CmdArgs) (netplan.Allocation, error) {
	return askIpamd(ctx, conf, args, false)
}

// lookup asks ipamd what the attachment holds, never allocating (CHECK).
func lookup(ctx context.Context, conf *NetConf, args *skel.CmdArgs) (netplan.Allocation, error) {
	return askIpamd(ctx, conf, args, true)
}

func askIpamd(ctx context.Context, conf *NetConf, args *skel.CmdArgs, lookupOnly bool) (netplan.Allocation, error) {
	pod, err := podFromArgs(args.Args)
	if err != nil {
		return netplan.Allocation{}, invalidConfig(err)
	}
	resp, err := rpc.NewClient(conf.IPAM.Socket).Allocate(ctx, &rpc.AllocateRequest{
		ContainerID: args.ContainerID, IfName: args.IfName, Network: conf.Name, Pod: pod,
		IPv4Pools: conf.IPAM.IPv4Pools, IPv6Pools: conf.IPAM.IPv6Pools,
		RequestedIPs: conf.requestedIPs(), LookupOnly: lookupOnly,
	})
	doing := "allocating addresses"
	if lookupOnly {
		doing = "asking ipamd what the attachment holds"
	}
	if err != nil {
		return netplan.Allocation{}, ipamdError(doing, err)
	}
	alloc, err := resp.Allocation()
	if err != nil {
		return netplan.Allocation{}, internalError("%s: %v", doing, err)
	}
	return alloc, nil
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
		return ipamdError("releasing addresses", err)
	}
	return nil
}

type logFunc func(msg string, err error)
