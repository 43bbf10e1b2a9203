package ipamplugin

import (
	"context"

	"github.com/containernetworking/cni/pkg/skel"
	"go.uber.org/zap"
)

// Session is what every verb of both plugins starts with: the runtime's arguments, the
// checked config, a log naming the attachment, and a context bounded by ipam.timeout.
type Session struct {
	Args *skel.CmdArgs
	Conf *NetConf
	Log  *zap.Logger
	Ctx  context.Context

	verb   string
	cancel context.CancelFunc
}

// Open is the one preamble of every verb, once its config is loaded (a config that
// does not load is the runtime's to fix: InvalidConfig): open the log, bound the verb's
// time. Close is the epilogue.
func Open(plugin, verb string, args *skel.CmdArgs, conf *NetConf) *Session {
	fields := []zap.Field{zap.String("cmd", verb), zap.String("plugin", plugin), zap.String("network", conf.Name)}
	if args.ContainerID != "" { // STATUS and GC are about the network, not one attachment
		fields = append(fields, zap.String("containerID", args.ContainerID), zap.String("ifName", args.IfName))
	}
	s := &Session{Args: args, Conf: conf, Log: newLogger(conf.LogFile, conf.LogLevel, fields...), verb: verb}
	s.Ctx, s.cancel = context.WithTimeout(context.Background(), conf.IPAM.timeout)
	return s
}

// Close logs the verb's failure, flushes the log and ends the context; it returns err.
func (s *Session) Close(err error) error {
	if err != nil {
		s.Log.Error(s.verb+" failed", zap.Error(err))
	}
	_ = s.Log.Sync()
	s.cancel()
	return err
}
