package chain

import (
	"errors"
	"os"

	"github.com/containernetworking/plugins/pkg/ns"

	"github.com/underpool/underpool/routes"
)

// cleanPod removes from the pod netns what outlives the link: the interface's policy
// rules and table. A netns that is gone took them with it, so that is no error.
func cleanPod(conf *NetConf, netnsPath, ifName string) error {
	if netnsPath == "" || !conf.Routing.policyRouting() {
		return nil
	}
	err := ns.WithNetNSPath(netnsPath, func(ns.NetNS) error {
		return routes.Remove(routes.TableFor(ifName, conf.Routing.TableBase))
	})
	var gone ns.NSPathNotExistErr
	if errors.As(err, &gone) || errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return err
}
