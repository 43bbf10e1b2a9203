package chain

import (
	"context"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"go.uber.org/zap"
)

// IPAMFuncs are the verbs of underpool-ipam, the IPAM plugin for standard conflists
// ({"type":"macvlan","ipam":{"type":"underpool-ipam",...}}): the same allocation as the
// meta-plugin, with the main plugin configuring the interface.
func IPAMFuncs() skel.CNIFuncs {
	return skel.CNIFuncs{Add: ipamAdd, Del: ipamDel, Check: ipamCheck, Status: ipamStatus, GC: ipamGC}
}

// MetaFuncs are the verbs of the underpool meta-plugin.
func MetaFuncs() skel.CNIFuncs {
	return skel.CNIFuncs{Add: CmdAdd, Del: CmdDel, Check: CmdCheck, Status: CmdStatus, GC: CmdGC}
}

func ipamAdd(args *skel.CmdArgs) error {
	s, err := startSession(args, false, "ADD", "underpool-ipam")
	if err != nil {
		return err
	}
	defer s.close()
	conf, log := s.conf, s.log
	alloc, err := allocate(s.ctx, conf, args)
	if err != nil {
		log.Error("ADD failed", zap.Error(err))
		return err
	}
	result, err := ipamResult(alloc, nil, conf.wantDefaultRoute())
	if err != nil {
		return wrap("%v", err)
	}
	result.CNIVersion = current.ImplementedSpecVersion
	log.Info("ADD done", zap.Stringer("result", resultSummary{result}))
	return types.PrintResult(result, conf.CNIVersion)
}

// ipamCheck confirms ipamd still holds the attachment's addresses.
func ipamCheck(args *skel.CmdArgs) error {
	conf, err := LoadConf(args.StdinData, false)
	if err != nil {
		return configError(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), conf.IPAM.timeout)
	defer cancel()
	_, err = lookup(ctx, conf, args)
	return err
}

func ipamStatus(args *skel.CmdArgs) error {
	conf, err := LoadConf(args.StdinData, false)
	if err != nil {
		return configError(err)
	}
	return ipamdStatus(conf)
}

func ipamGC(args *skel.CmdArgs) error {
	conf, err := LoadConf(args.StdinData, false)
	if err != nil {
		return configError(err)
	}
	return gc(conf, "underpool-ipam")
}
