package chain

import (
	"os"
	"path/filepath"

	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/types"

	"github.com/underpool/underpool/chain/ipamplugin"
)

// status reports the network not ready while ipamd does not serve allocations or the
// delegate binary is missing.
func status(s *session) error {
	if _, err := invoke.FindInPath(s.conf.DelegateType(), filepath.SplitList(os.Getenv("CNI_PATH"))); err != nil {
		return types.NewError(types.ErrPluginNotAvailable, "delegate plugin "+s.conf.DelegateType()+" is not installed in CNI_PATH", err.Error())
	}
	return ipamplugin.Status(s.ctx, s.ipam())
}
