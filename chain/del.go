package chain

import (
	"github.com/containernetworking/cni/pkg/invoke"
	"go.uber.org/zap"

	"github.com/underpool/underpool/chain/ipamplugin"
	"github.com/underpool/underpool/rdma"
)

// del detaches a pod: the delegate removes the link first, so the address is never free
// while a link still carries it; then ipamd releases it. Missing state is not an error.
func del(s *session) error {
	conf, args := s.conf, s.args
	s.recordedUplink()
	delegateConf, err := conf.DelegateConf()
	if err != nil {
		return invalidConfig(err)
	}
	if conf.RDMA.Mode == string(rdma.Exclusive) {
		// the RDMA device goes back before the delegate takes the netdev it is bound to
		if err := newAttacher(conf.RDMA).Detach(args.ContainerID, args.IfName, args.Netns); err != nil {
			return internalError("RDMA: %v", err)
		}
	}
	if err := removeHostLink(args); err != nil {
		// its routes lead to an address about to be released: give up the DEL, the
		// runtime retries it
		return internalError("removing the host veth: %v", err)
	}
	if err := cleanPod(conf, args.Netns, args.IfName); err != nil {
		// the pod netns usually goes right after DEL, taking a stray rule with it; a
		// failure here must not block the pod's removal
		s.log.Warn("removing routing rules", zap.Error(err))
	}
	if err := invoke.DelegateDel(s.ctx, conf.DelegateType(), delegateConf, nil); err != nil {
		return internalError("delegate %s DEL: %v", conf.DelegateType(), err)
	}
	if masterDelegates[conf.DelegateType()] {
		// the pod's link is gone: the VLAN interface or bond ADD made goes with its last user
		if err := leaveUplink(s.ctx, newUplinkStore(), args.ContainerID, args.IfName, s.log); err != nil {
			s.log.Warn("giving back the uplink (GC retries)", zap.Error(err))
		}
	}
	if err := ipamplugin.Release(s.ctx, s.ipam(), args, s.log); err != nil {
		return err
	}
	s.log.Info("DEL done")
	return nil
}
