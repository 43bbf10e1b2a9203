package chain

import (
	"context"

	"github.com/containernetworking/cni/pkg/skel"
	"go.uber.org/zap"

	"github.com/underpool/underpool/chain/ipamplugin"
)

// MetaFuncs are the verbs of the underpool meta-plugin.
func MetaFuncs() skel.CNIFuncs {
	return skel.CNIFuncs{Add: run("ADD", add), Del: run("DEL", del), Check: run("CHECK", check),
		Status: run("STATUS", status), GC: run("GC", gc)}
}

// session is what every verb starts with: the runtime's arguments, the checked config, a
// log naming the attachment, and a context bounded by ipam.timeout.
type session struct {
	args *skel.CmdArgs
	conf *NetConf
	log  *zap.Logger
	ctx  context.Context
}

// run loads the meta-plugin's config (a bad one is the runtime's to fix) and runs the
// verb between the preamble and epilogue both plugins share (ipamplugin.Open).
func run(verb string, fn func(*session) error) func(*skel.CmdArgs) error {
	return func(args *skel.CmdArgs) error {
		conf, err := LoadConf(args.StdinData)
		if err != nil {
			return invalidConfig(err)
		}
		v := ipamplugin.Open("underpool", verb, args, &conf.NetConf)
		return v.Close(fn(&session{args: args, conf: conf, log: v.Log, ctx: v.Ctx}))
	}
}

// ipam is the IPAM plugin's part of the config, which the calls to ipamd take.
func (s *session) ipam() *ipamplugin.NetConf { return &s.conf.NetConf }
