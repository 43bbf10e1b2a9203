package chain

import (
	"context"
	"os"
	"path/filepath"
	"time"

	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/types"

	"github.com/underpool/underpool/ipamd/rpc"
)

// statusTimeout bounds STATUS: a runtime asks often and must not wait for a hung daemon.
const statusTimeout = 5 * time.Second

// status reports the network not ready while ipamd does not serve allocations or the
// delegate binary is missing.
func status(s *session) error {
	if _, err := invoke.FindInPath(s.conf.DelegateType(), filepath.SplitList(os.Getenv("CNI_PATH"))); err != nil {
		return types.NewError(types.ErrPluginNotAvailable, "delegate plugin "+s.conf.DelegateType()+" is not installed in CNI_PATH", err.Error())
	}
	return ipamdStatus(s)
}

// ipamStatus is STATUS of the IPAM-only plugin: ipamd's readiness alone.
func ipamStatus(s *session) error { return ipamdStatus(s) }

func ipamdStatus(s *session) error {
	ctx, cancel := context.WithTimeout(s.ctx, statusTimeout)
	defer cancel()
	st, err := rpc.NewClient(s.conf.IPAM.Socket).Status(ctx)
	if err != nil {
		return types.NewError(types.ErrPluginNotAvailable, "ipamd is not available: "+err.Error(), "")
	}
	if !st.Ready {
		return types.NewError(types.ErrPluginNotAvailable, "ipamd is not ready: "+st.Reason, "")
	}
	return nil
}
