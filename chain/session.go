package chain

import (
	"context"

	"github.com/containernetworking/cni/pkg/skel"
	"go.uber.org/zap"
)

// plugin is one of the two CNI binaries this package is the logic of.
type plugin struct {
	name string
	// needDelegate: the meta-plugin makes the link through a delegate; the IPAM-only
	// plugin leaves the link to the plugin that called it.
	needDelegate bool
}

var (
	metaPlugin = plugin{name: "underpool", needDelegate: true}
	ipamPlugin = plugin{name: "underpool-ipam"}
)

// MetaFuncs are the verbs of the underpool meta-plugin.
func MetaFuncs() skel.CNIFuncs {
	p := metaPlugin
	return skel.CNIFuncs{Add: p.run("ADD", add), Del: p.run("DEL", del), Check: p.run("CHECK", check),
		Status: p.run("STATUS", status), GC: p.run("GC", gc)}
}

// IPAMFuncs are the verbs of underpool-ipam, the IPAM plugin for standard conflists
// ({"type":"macvlan","ipam":{"type":"underpool-ipam",...}}): the same allocation as the
// meta-plugin, with the main plugin configuring the interface.
func IPAMFuncs() skel.CNIFuncs {
	p := ipamPlugin
	return skel.CNIFuncs{Add: p.run("ADD", ipamAdd), Del: p.run("DEL", ipamDel), Check: p.run("CHECK", ipamCheck),
		Status: p.run("STATUS", ipamStatus), GC: p.run("GC", ipamGC)}
}

// session is what every verb starts with: the runtime's arguments, the checked config, a
// log naming the attachment, and a context bounded by ipam.timeout.
type session struct {
	args   *skel.CmdArgs
	conf   *NetConf
	log    *zap.Logger
	ctx    context.Context
	cancel context.CancelFunc
}

// run is the one preamble of every verb: load the config (a bad one is the runtime's
// to fix), open the log, bound the verb's time; and the one epilogue: log a failure,
// flush, cancel.
func (p plugin) run(verb string, fn func(*session) error) func(*skel.CmdArgs) error {
	return func(args *skel.CmdArgs) error {
		conf, err := LoadConf(args.StdinData, p.needDelegate)
		if err != nil {
			return invalidConfig(err)
		}
		fields := []zap.Field{zap.String("cmd", verb), zap.String("plugin", p.name), zap.String("network", conf.Name)}
		if args.ContainerID != "" { // STATUS and GC are about the network, not one attachment
			fields = append(fields, zap.String("containerID", args.ContainerID), zap.String("ifName", args.IfName))
		}
		s := &session{args: args, conf: conf, log: newLogger(conf.LogFile, conf.LogLevel, fields...)}
		s.ctx, s.cancel = context.WithTimeout(context.Background(), conf.IPAM.timeout)
		defer s.close()
		if err := fn(s); err != nil {
			s.log.Error(verb+" failed", zap.Error(err))
			return err
		}
		return nil
	}
}

func (s *session) close() {
	_ = s.log.Sync()
	s.cancel()
}

// logWarn adapts the session log for helpers that report without failing.
func (s *session) logWarn(msg string, err error) { s.log.Warn(msg, zap.Error(err)) }
