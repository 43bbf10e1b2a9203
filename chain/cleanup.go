package chain

import (
	"errors"
	"net/netip"
	"os"

	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/plugins/pkg/ns"

	"github.com/underpool/underpool/underlay"
)

// cleanPod removes from the pod netns what outlives the link: the interface's policy
// rules and table, only this attachment's (its addresses are on the link while it lives,
// and in the ADD result the runtime passes to DEL). A netns that is gone took them with
// it, so that is no error.
func cleanPod(conf *NetConf, netnsPath, ifName string) error {
	table := conf.Routing.table(ifName)
	if netnsPath == "" || table == 0 {
		return nil
	}
	var addrs []netip.Addr
	if conf.PrevResult != nil {
		if prev, err := current.NewResultFromResult(conf.PrevResult); err == nil {
			for _, p := range resultAddresses(prev, ifName) {
				addrs = append(addrs, p.Addr())
			}
		}
	}
	err := ns.WithNetNSPath(netnsPath, func(ns.NetNS) error { return underlay.Remove(table, ifName, addrs) })
	var gone ns.NSPathNotExistErr
	if errors.As(err, &gone) || errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return err
}
