package chain

import (
	"context"
	"fmt"

	"github.com/containernetworking/cni/pkg/skel"
	"go.uber.org/zap"

	"github.com/underpool/underpool/ipamd/rpc"
	"github.com/underpool/underpool/rdma"
)

// CmdGC releases this node's attachments of this network that the runtime no longer lists.
func CmdGC(args *skel.CmdArgs) error {
	conf, err := LoadConf(args.StdinData, true)
	if err != nil {
		return configError(err)
	}
	if conf.RDMA.Mode == string(rdma.Exclusive) {
		valid := map[string]bool{}
		for _, a := range conf.ValidAttachments {
			valid[a.ContainerID+"/"+a.IfName] = true
		}
		// what no runtime knows any more had its netns destroyed: the kernel has the
		// devices back, only the records remain
		if _, err := newAttacher(conf.RDMA).GC(valid); err != nil {
			return wrap("RDMA GC: %v", err)
		}
	}
	return gc(conf, "underpool")
}

func gc(conf *NetConf, plugin string) error {
	log := newLogger(conf.LogFile, conf.LogLevel, zap.String("cmd", "GC"), zap.String("plugin", plugin), zap.String("network", conf.Name))
	defer log.Sync() //nolint:errcheck
	ctx, cancel := context.WithTimeout(context.Background(), conf.IPAM.timeout)
	defer cancel()
	req := &rpc.GCRequest{Network: conf.Name, Valid: []rpc.Attachment{}}
	for _, a := range conf.ValidAttachments {
		req.Valid = append(req.Valid, rpc.Attachment{ContainerID: a.ContainerID, IfName: a.IfName})
	}
	resp, err := rpc.NewClient(conf.IPAM.Socket).GC(ctx, req)
	if err != nil {
		log.Error("GC failed", zap.Error(err))
		return cniError("garbage collection", err)
	}
	log.Info("GC done", zap.Int("released", len(resp.Released)), zap.String("attachments", fmt.Sprint(resp.Released)))
	return nil
}
