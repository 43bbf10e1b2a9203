package chain

import (
	"context"
	"fmt"

	"github.com/containernetworking/cni/pkg/skel"
	"go.uber.org/zap"

	"github.com/underpool/underpool/ipamd/rpc"
)

// CmdGC releases this node's attachments of this network that the runtime no longer lists.
func CmdGC(args *skel.CmdArgs) error {
	conf, err := LoadConf(args.StdinData, true)
	if err != nil {
		return configError(err)
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
