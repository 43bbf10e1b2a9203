// Command underpool is the meta-plugin: addresses from ipamd, the link from a delegate.
package main

import (
	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/version"

	"github.com/underpool/underpool/chain"
	"github.com/underpool/underpool/internal/buildinfo"
)

func main() {
	buildinfo.PrintIfAsked("underpool")
	skel.PluginMainFuncs(chain.MetaFuncs(), version.All, buildinfo.About("underpool", "underlay networking with addresses from ipamd"))
}
