package chain

import (
	"github.com/containernetworking/cni/pkg/types"
	"go.uber.org/zap"
)

// The verbs of underpool-ipam that differ from the meta-plugin's (IPAMFuncs lists them
// all): no delegate, no pod netns work; the calling plugin configures the interface.

func ipamAdd(s *session) error {
	alloc, err := allocate(s.ctx, s.conf, s.args)
	if err != nil {
		return err
	}
	result := ipamResult(alloc, s.conf.wantDefaultRoute())
	s.log.Info("ADD done", zap.Stringer("result", resultSummary{result}))
	return types.PrintResult(result, s.conf.CNIVersion)
}

// ipamDel releases the attachment's addresses.
func ipamDel(s *session) error {
	return release(s.ctx, s.conf, s.args, s.logWarn)
}

// ipamCheck confirms ipamd still holds the attachment's addresses.
func ipamCheck(s *session) error {
	_, err := lookup(s.ctx, s.conf, s.args)
	return err
}
