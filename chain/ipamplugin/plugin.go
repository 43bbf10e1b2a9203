package ipamplugin

import (
	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	"go.uber.org/zap"

	"github.com/underpool/underpool/netplan"
)

// The verbs of underpool-ipam: the meta-plugin's allocation, with no delegate and no pod
// netns work; the calling plugin configures the interface.

// Funcs are the verbs of underpool-ipam.
func Funcs() skel.CNIFuncs {
	return skel.CNIFuncs{Add: run("ADD", add), Del: run("DEL", del), Check: run("CHECK", check),
		Status: run("STATUS", status), GC: run("GC", gc)}
}

func run(verb string, fn func(*Session) error) func(*skel.CmdArgs) error {
	return func(args *skel.CmdArgs) error {
		conf, err := LoadConf(args.StdinData)
		if err != nil {
			return InvalidConfig(err)
		}
		s := Open("underpool-ipam", verb, args, conf)
		return s.Close(fn(s))
	}
}

func add(s *Session) error {
	alloc, err := Allocate(s.Ctx, s.Conf, s.Args)
	if err != nil {
		return err
	}
	result := Result(alloc, holdsDefault(s.Conf.WantDefaultRoute(), alloc, s.Args.IfName))
	s.Log.Info("ADD done", zap.Stringer("result", Summary{result}))
	return types.PrintResult(result, s.Conf.CNIVersion)
}

// del releases the attachment's addresses.
func del(s *Session) error { return Release(s.Ctx, s.Conf, s.Args, s.Log) }

// check confirms ipamd still holds the attachment's addresses.
func check(s *Session) error {
	_, err := Lookup(s.Ctx, s.Conf, s.Args)
	return err
}

// status is ipamd's readiness alone.
func status(s *Session) error { return Status(s.Ctx, s.Conf) }

func gc(s *Session) error { return GC(s.Ctx, s.Conf, s.Log) }

// holdsDefault: the interface's result carries the default routes when its config allows
// them and the pod did not name another interface for them (default-route-nic).
func holdsDefault(allowed bool, alloc netplan.Allocation, ifName string) bool {
	holder := alloc.DefaultRouteHolder("")
	return allowed && (holder == "" || holder == ifName)
}
