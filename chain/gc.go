package chain

import (
	"time"

	"github.com/containernetworking/cni/pkg/invoke"
	"go.uber.org/zap"

	"github.com/underpool/underpool/chain/ipamplugin"
	"github.com/underpool/underpool/rdma"
)

// gc passes GC on to the delegate with the runtime's valid attachments (CNI 1.1: a
// plugin that delegates must), then releases this node's attachments of this network
// that the runtime no longer lists. The addresses' half runs whatever the delegate says:
// the runtime has already run DEL for what it no longer lists.
// rdmaGCMinAge: an RDMA record younger than this is not judged by GC (an ADD in flight
// when the runtime took its list is in no list yet).
const rdmaGCMinAge = time.Minute

func gc(s *session) error {
	delegateErr := delegateGC(s)
	if delegateErr != nil {
		s.log.Warn("delegate GC", zap.Error(delegateErr))
	}
	if s.conf.RDMA.Mode == string(rdma.Exclusive) {
		valid := map[string]bool{}
		for _, a := range s.conf.ValidAttachments {
			valid[a.ContainerID+"/"+a.IfName] = true
		}
		// what no runtime knows any more had its netns destroyed: the kernel has the
		// devices back, only the records remain
		if _, err := newAttacher(s.conf.RDMA).GC(s.conf.Name, valid, time.Now().Add(-rdmaGCMinAge)); err != nil {
			return internalError("RDMA GC: %v", err)
		}
	}
	if masterDelegates[s.conf.DelegateType()] {
		valid := map[string]bool{}
		for _, a := range s.conf.ValidAttachments {
			valid[a.ContainerID+"/"+a.IfName] = true
		}
		if err := gcUplinks(s.ctx, newUplinkStore(), s.conf.Name, valid, time.Now(), s.log); err != nil {
			s.log.Warn("uplink GC", zap.Error(err))
		}
	}
	if err := ipamplugin.GC(s.ctx, s.ipam(), s.log); err != nil {
		return err
	}
	return delegateErr
}

// delegateGC runs the delegate's GC with the same valid attachments.
func delegateGC(s *session) error {
	conf, err := s.conf.DelegateConf()
	if err != nil {
		return invalidConfig(err)
	}
	if err := invoke.DelegateGC(s.ctx, s.conf.DelegateType(), conf, nil); err != nil {
		return internalError("delegate %s GC: %v", s.conf.DelegateType(), err)
	}
	return nil
}
