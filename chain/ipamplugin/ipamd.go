package ipamplugin

import (
	"context"
	"fmt"
	"time"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	"go.uber.org/zap"

	"github.com/underpool/underpool/netplan"
	"github.com/underpool/underpool/rpc"
)

// The calls to ipamd, the same for both plugins: each turns ipamd's answer into the CNI
// error a runtime acts on.

// statusTimeout bounds STATUS: a runtime asks often and must not wait for a hung daemon.
const statusTimeout = 5 * time.Second

// Allocate asks ipamd for the attachment's addresses.
func Allocate(ctx context.Context, conf *NetConf, args *skel.CmdArgs) (netplan.Allocation, error) {
	return askIpamd(ctx, conf, args, false)
}

// Lookup asks ipamd what the attachment holds, never allocating (CHECK).
func Lookup(ctx context.Context, conf *NetConf, args *skel.CmdArgs) (netplan.Allocation, error) {
	return askIpamd(ctx, conf, args, true)
}

func askIpamd(ctx context.Context, conf *NetConf, args *skel.CmdArgs, lookupOnly bool) (netplan.Allocation, error) {
	pod, err := podFromArgs(args.Args)
	if err != nil {
		return netplan.Allocation{}, InvalidConfig(err)
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
		return netplan.Allocation{}, InternalError("%s: %v", doing, err)
	}
	return alloc, nil
}

// Release frees the attachment's addresses; conflicts are addresses another host
// answered for, which ipamd then keeps out of allocation. An unreachable ipamd is not an
// error: the address comes back through ipamd's garbage collection once the pod is
// gone, and a DEL that fails forever would block the pod's removal.
func Release(ctx context.Context, conf *NetConf, args *skel.CmdArgs, log *zap.Logger, conflicts ...rpc.Conflict) error {
	pod, _ := podFromArgs(args.Args) // a DEL with odd args still releases by container ID
	err := rpc.NewClient(conf.IPAM.Socket).Release(ctx, &rpc.ReleaseRequest{
		ContainerID: args.ContainerID, IfName: args.IfName, Pod: pod, Conflicts: conflicts})
	if err != nil && isUnreachable(err) {
		log.Warn("ipamd unreachable on DEL; its GC will reclaim the address", zap.Error(err))
		return nil
	}
	if err != nil {
		return ipamdError("releasing addresses", err)
	}
	return nil
}

// Status reports the network not ready while ipamd does not serve allocations.
func Status(ctx context.Context, conf *NetConf) error {
	ctx, cancel := context.WithTimeout(ctx, statusTimeout)
	defer cancel()
	st, err := rpc.NewClient(conf.IPAM.Socket).Status(ctx)
	if err != nil {
		return types.NewError(types.ErrPluginNotAvailable, "ipamd is not available: "+err.Error(), "")
	}
	if !st.Ready {
		return types.NewError(types.ErrPluginNotAvailable, "ipamd is not ready: "+st.Reason, "")
	}
	return nil
}

// GC releases this node's attachments of the network that the runtime no longer lists
// (conf.ValidAttachments).
func GC(ctx context.Context, conf *NetConf, log *zap.Logger) error {
	req := &rpc.GCRequest{Network: conf.Name, Valid: []rpc.Attachment{}}
	for _, a := range conf.ValidAttachments {
		req.Valid = append(req.Valid, rpc.Attachment{ContainerID: a.ContainerID, IfName: a.IfName})
	}
	resp, err := rpc.NewClient(conf.IPAM.Socket).GC(ctx, req)
	if err != nil {
		return ipamdError("garbage collection", err)
	}
	log.Info("GC done", zap.Int("released", len(resp.Released)), zap.String("attachments", fmt.Sprint(resp.Released)))
	return nil
}
