// Command underpool-ipam is the IPAM plugin for standard conflists, backed by ipamd.
package main

import (
	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/version"

	"github.com/underpool/underpool/chain"
)

func main() {
	skel.PluginMainFuncs(chain.IPAMFuncs(), version.All, "underpool-ipam: addresses from ipamd for any CNI plugin")
}
