// Command underpool is the meta-plugin: addresses from ipamd, the link from a delegate.
package main

import (
	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/version"

	"github.com/underpool/underpool/chain"
)

func main() {
	skel.PluginMainFuncs(chain.MetaFuncs(), version.All, "underpool: underlay networking with addresses from ipamd")
}
