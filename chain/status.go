package chain

import (
	"context"
	"os"
	"path/filepath"
	"time"

	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"

	"github.com/underpool/underpool/ipamd/rpc"
)

// CmdStatus reports the network not ready while ipamd does not serve allocations or the
// delegate binary is missing.
func CmdStatus(args *skel.CmdArgs) error {
	conf, err := LoadConf(args.StdinData, true)
	if err != nil {
		return configError(err)
	}
	if _, err := invoke.FindInPath(conf.DelegateType(), filepath.SplitList(os.Getenv("CNI_PATH"))); err != nil {
		return types.NewError(types.ErrPluginNotAvailable, "delegate plugin "+conf.DelegateType()+" is not installed in CNI_PATH", err.Error())
	}
	return ipamdStatus(conf)
}

func ipamdStatus(conf *NetConf) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
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
