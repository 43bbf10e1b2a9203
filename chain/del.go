package chain

import (
	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/skel"
	"go.uber.org/zap"

	"github.com/underpool/underpool/rdma"
)

// CmdDel detaches a pod: the delegate removes the link first, so the address is never free
// while a link still carries it; then ipamd releases it. Missing state is not an error.
func CmdDel(args *skel.CmdArgs) error {
	s, err := startSession(args, true, "DEL", "underpool")
	if err != nil {
		return err
	}
	defer s.close()
	conf, log, ctx := s.conf, s.log, s.ctx

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
	if err := release(ctx, conf, args, s.logWarn); err != nil {
		log.Error("release failed", zap.Error(err))
		return err
	}
	log.Info("DEL done")
	return nil
}

// ipamDel is DEL for the IPAM-only plugin.
func ipamDel(args *skel.CmdArgs) error {
	s, err := startSession(args, false, "DEL", "underpool-ipam")
	if err != nil {
		return err
	}
	defer s.close()
	if err := release(s.ctx, s.conf, args, s.logWarn); err != nil {
		s.log.Error("release failed", zap.Error(err))
		return err
	}
	return nil
}
