// Command underpool-ipam is the IPAM plugin for standard conflists, backed by ipamd.
package main

import (
	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/version"

	"github.com/underpool/underpool/chain/ipamplugin"
	"github.com/underpool/underpool/internal/buildinfo"
)

func main() {
	buildinfo.PrintIfAsked("underpool-ipam")
	skel.PluginMainFuncs(ipamplugin.Funcs(), version.All, buildinfo.About("underpool-ipam", "addresses from ipamd for any CNI plugin"))
}
