package chain

import (
	"net"
	"os"
	"strings"
	"testing"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/containernetworking/plugins/pkg/testutils"
	"github.com/vishvananda/netlink"
)

// ADD refuses a routing table another interface of the pod routes through (two names
// whose hashes meet), and accepts its own and its host veth's.
func TestTableFreeRefusesAnotherInterfacesTable(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("network namespaces need root")
	}
	podNS, err := testutils.NewNS()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = podNS.Close(); _ = testutils.UnmountNS(podNS) })
	const table = 1234
	err = podNS.Do(func(ns.NetNS) error {
		for _, name := range []string{"net1", "uplink", podVethName("net1")} {
			link := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name}, PeerName: "p" + name[:min(len(name), 10)]}
			if err := netlink.LinkAdd(link); err != nil {
				return err
			}
			if err := netlink.LinkSetUp(link); err != nil {
				return err
			}
		}
		route := func(dev, dst string) {
			l, _ := netlink.LinkByName(dev)
			_, n, _ := net.ParseCIDR(dst)
			if err := netlink.RouteAdd(&netlink.Route{LinkIndex: l.Attrs().Index, Dst: n, Table: table, Scope: netlink.SCOPE_LINK}); err != nil {
				t.Fatal(err)
			}
		}
		if err := tableFree(table, "net1"); err != nil {
			t.Fatalf("empty table: %v", err)
		}
		route("net1", "10.250.1.0/24")
		route(podVethName("net1"), "10.250.9.1/32")
		if err := tableFree(table, "net1"); err != nil {
			t.Fatalf("a table holding net1's and its host veth's routes: %v", err)
		}
		route("uplink", "10.250.2.0/24")
		err := tableFree(table, "net1")
		if err == nil || !strings.Contains(err.Error(), "uplink") || !strings.Contains(err.Error(), "routing.tableBase") {
			t.Fatalf("a table uplink routes through: error %v, want one naming uplink and the fix", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
