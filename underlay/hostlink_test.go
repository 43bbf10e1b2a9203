package underlay

import (
	"fmt"
	"net/netip"
	"slices"
	"testing"

	"github.com/vishvananda/netlink"
)

// The node's addresses are its links' global addresses, never loopback's (a BGP node's
// anycast /32 on lo is no address a pod should reach the node by), whatever the number of
// links: read in one dump, not one call per link.
func TestNodeAddressesAreTheLinksGlobalAddresses(t *testing.T) {
	inPodNetns(t, "10.250.9.2/24", func() {
		for i := range 40 { // host veths without addresses, as on a busy node
			v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: fmt.Sprintf("hv%d", i)}, PeerName: fmt.Sprintf("hp%d", i)}
			if err := netlink.LinkAdd(v); err != nil {
				t.Fatal(err)
			}
		}
		lo, err := netlink.LinkByName("lo")
		if err == nil {
			err = netlink.LinkSetUp(lo)
		}
		if err == nil {
			err = netlink.AddrAdd(lo, &netlink.Addr{IPNet: netlink.NewIPNet(netip.MustParseAddr("10.250.9.99").AsSlice())})
		}
		if err != nil {
			t.Fatal(err)
		}
		got, err := NodeAddresses()
		if err != nil {
			t.Fatal(err)
		}
		if want := netip.MustParseAddr("10.250.9.2"); !slices.Equal(got, []netip.Addr{want}) {
			t.Fatalf("NodeAddresses = %v, want only %s (not loopback's, not link-local)", got, want)
		}
	})
}
