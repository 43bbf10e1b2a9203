package chain

import (
	"context"

	"github.com/containernetworking/cni/pkg/skel"
	"go.uber.org/zap"
)

// session is what a logging verb starts with: the checked config, a log naming the
// attachment, and a context bounded by ipam.timeout. close flushes and cancels.
type session struct {
	conf   *NetConf
	log    *zap.Logger
	ctx    context.Context
	cancel context.CancelFunc
}

func startSession(args *skel.CmdArgs, needDelegate bool, cmd, plugin string) (*session, error) {
	conf, err := LoadConf(args.StdinData, needDelegate)
	if err != nil {
		return nil, configError(err)
	}
	log := newLogger(conf.LogFile, conf.LogLevel, zap.String("cmd", cmd), zap.String("plugin", plugin),
		zap.String("containerID", args.ContainerID), zap.String("ifName", args.IfName), zap.String("network", conf.Name))
	ctx, cancel := context.WithTimeout(context.Background(), conf.IPAM.timeout)
	return &session{conf: conf, log: log, ctx: ctx, cancel: cancel}, nil
}

func (s *session) close() {
	_ = s.log.Sync()
	s.cancel()
}

// logWarn adapts the session log for helpers that report without failing.
func (s *session) logWarn(msg string, err error) { s.log.Warn(msg, zap.Error(err)) }
