package chain

import (
	"errors"
	"os"

	"github.com/containernetworking/plugins/pkg/ns"

	"github.com/underpool/underpool/underlay"
)

// cleanPod removes from the pod netns what outlives the link: the interface's policy
// rules and table. A netns that is gone took them with it, so that is no error.
func cleanPod(conf *NetConf, netnsPath, ifName string) error {
	table := conf.Routing.table(ifName)
	if netnsPath == "" || table == 0 {
		return nil
	}
	err := ns.WithNetNSPath(netnsPath, func(ns.NetNS) error { return underlay.Remove(table) })
	var gone ns.NSPathNotExistErr
	if errors.As(err, &gone) || errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return err
}
