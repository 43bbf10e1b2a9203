// Command underpool-ipam is the IPAM plugin for standard conflists, backed by ipamd.
package main

import (
	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/version"

	"github.com/underpool/underpool/chain"
	"github.com/underpool/underpool/internal/buildinfo"
)

func main() {
	buildinfo.PrintIfAsked("underpool-ipam")
	skel.PluginMainFuncs(chain.IPAMFuncs(), version.All, buildinfo.About("underpool-ipam", "addresses from ipamd for any CNI plugin"))
}
