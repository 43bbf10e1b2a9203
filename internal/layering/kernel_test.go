package layering

import (
	"os/exec"
	"slices"
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

// skelNetns is what every CNI plugin links through skel (its netns argument check):
// host-local links it too, and it is a few setns calls, not the kernel networking above.
const skelNetns = "github.com/vishvananda/netns"

// TestLinksNoKernelNetworking proves the split between deciding (netplan, ipamd) and
// applying (underlay, chain), and that the IPAM-only plugin, which configures no
// interface, links none of the meta-plugin's kernel code: `make check-deps` runs it.
func TestLinksNoKernelNetworking(t *testing.T) {
	for _, c := range []struct {
		pkg, fix string
		allow    []string // linked anyway, see the comment of each
	}{
		{pkg: "github.com/underpool/underpool/cmd/ipamd", fix: "move the code that needs it to package underlay"},
		{pkg: "github.com/underpool/underpool/netplan", fix: "move the code that needs it to package underlay"},
		{pkg: "github.com/underpool/underpool/core/allocator", fix: "move the code that needs it to package underlay"},
		{pkg: "github.com/underpool/underpool/rpc", fix: "move the code that needs it to package underlay"},
		{pkg: "github.com/underpool/underpool/plugins/underpool-ipam", allow: []string{skelNetns},
			fix: "keep what needs it in package chain (the meta-plugin), out of chain/ipamplugin"},
		{pkg: "github.com/underpool/underpool/chain/ipamplugin", allow: []string{skelNetns},
			fix: "keep what needs it in package chain (the meta-plugin), out of chain/ipamplugin"},
	} {
		t.Run(c.pkg, func(t *testing.T) {
			out, err := exec.Command("go", "list", "-deps", c.pkg).CombinedOutput()
			if err != nil {
				t.Fatalf("go list -deps %s: %v\n%s", c.pkg, err, out)
			}
			for _, dep := range strings.Fields(string(out)) {
				if bad := forbidden(dep); bad && !slices.Contains(c.allow, dep) {
					t.Errorf("%s links %s: %s (go list -deps or go mod why shows the path)", c.pkg, dep, c.fix)
				}
			}
		})
	}
}

// forbidden: dep is, or lies under, one of kernelNetworking.
func forbidden(dep string) bool {
	for _, bad := range kernelNetworking {
		if dep == bad || strings.HasPrefix(dep, bad+"/") || (strings.HasSuffix(bad, "/") && strings.HasPrefix(dep, bad)) {
			return true
		}
	}
	return false
}
