package main

import (
	"os/exec"
	"strings"
	"testing"
)

// kernelNetworking are the packages of the plugins' Linux side. ipamd decides addresses
// and routes and never touches a netns: linking these would put the plugin's kernel code
// (and its init-time sockets and syscalls) into the daemon, and would mean a pure package
// grew an import it must not have.
var kernelNetworking = []string{
	"github.com/vishvananda/netlink",
	"github.com/vishvananda/netns",
	"github.com/mdlayher/arp",
	"github.com/mdlayher/ndp",
	"github.com/mdlayher/packet",
	"github.com/containernetworking/plugins/",
	"github.com/underpool/underpool/underlay",
}

// TestLinksNoKernelNetworking proves the split between deciding (netplan, ipamd) and
// applying (underlay, chain): `make check-deps` runs it.
func TestLinksNoKernelNetworking(t *testing.T) {
	for _, pkg := range []string{
		"github.com/underpool/underpool/cmd/ipamd",
		"github.com/underpool/underpool/netplan",
		"github.com/underpool/underpool/ipamd/allocator",
		"github.com/underpool/underpool/ipamd/rpc",
	} {
		t.Run(pkg, func(t *testing.T) {
			out, err := exec.Command("go", "list", "-deps", pkg).CombinedOutput()
			if err != nil {
				t.Fatalf("go list -deps %s: %v\n%s", pkg, err, out)
			}
			for _, dep := range strings.Fields(string(out)) {
				for _, bad := range kernelNetworking {
					if dep == bad || strings.HasPrefix(dep, bad+"/") || (strings.HasSuffix(bad, "/") && strings.HasPrefix(dep, bad)) {
						t.Errorf("%s links %s: move the code that needs it to package underlay (go mod why -m or go list -deps shows the path)", pkg, dep)
					}
				}
			}
		})
	}
}
