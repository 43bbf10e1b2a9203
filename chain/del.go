package chain

import (
	"context"
	"fmt"

	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/skel"
	"go.uber.org/zap"

	"github.com/underpool/underpool/rdma"
)

// CmdDel detaches a pod: the delegate removes the link first, so the address is never free
// while a link still carries it; then ipamd releases it. Missing state is not an error.
func CmdDel(args *skel.CmdArgs) error {
	conf, err := LoadConf(args.StdinData, true)
	if err != nil {
		return configError(err)
	}
	log := newLogger(conf.LogFile, conf.LogLevel, zap.String("cmd", "DEL"), zap.String("containerID", args.ContainerID),
		zap.String("ifName", args.IfName), zap.String("network", conf.Name))
	defer log.Sync() //nolint:errcheck
	ctx, cancel := context.WithTimeout(context.Background(), conf.IPAM.timeout)
	defer cancel()

	delegateConf, err := conf.DelegateConf()
	if err != nil {
		return configError(err)
	}
	if conf.RDMA.Mode == string(rdma.Exclusive) {
		// the RDMA device goes back before the delegate takes the netdev it is bound to
		if err := newAttacher(conf.RDMA).Detach(args.ContainerID, args.IfName, args.Netns); err != nil {
			return wrap("RDMA: %v", err)
		}
	}
	if err := removeHostLink(args); err != nil {
		// its routes lead to an address about to be released: give up the DEL, the
		// runtime retries it
		return wrap("removing the host veth: %v", err)
	}
	if err := cleanPod(conf, args.Netns, args.IfName); err != nil {
		// the pod netns usually goes right after DEL, taking a stray rule with it; a
		// failure here must not block the pod's removal
		log.Warn("removing routing rules", zap.Error(err))
	}
	if err := invoke.DelegateDel(ctx, conf.DelegateType(), delegateConf, nil); err != nil {
		log.Error("delegate DEL failed", zap.Error(err))
		return wrap("delegate %s DEL: %v", conf.DelegateType(), err)
	}
	if err := release(ctx, conf, args, func(msg string, e error) { log.Warn(msg, zap.Error(e)) }); err != nil {
		log.Error("release failed", zap.Error(err))
		return err
	}
	log.Info("DEL done")
	return nil
}

// ipamDel is DEL for the IPAM-only plugin.
func ipamDel(args *skel.CmdArgs) error {
	conf, err := LoadConf(args.StdinData, false)
	if err != nil {
		return configError(err)
	}
	log := newLogger(conf.LogFile, conf.LogLevel, zap.String("cmd", "DEL"), zap.String("plugin", "underpool-ipam"),
		zap.String("containerID", args.ContainerID), zap.String("ifName", args.IfName))
	defer log.Sync() //nolint:errcheck
	ctx, cancel := context.WithTimeout(context.Background(), conf.IPAM.timeout)
	defer cancel()
	if err := release(ctx, conf, args, func(msg string, e error) { log.Warn(msg, zap.Error(e)) }); err != nil {
		log.Error("release failed", zap.Error(err))
		return fmt.Errorf("%w", err)
	}
	return nil
}
