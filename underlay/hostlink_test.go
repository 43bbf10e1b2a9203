package underlay

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/containernetworking/plugins/pkg/testutils"
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

// A host veth's node end carries no IPv6 address at all, link-local included: the node's
// address list, read on every ADD, stays the node's own however many pods it has.
func TestHostVethNodeEndHasNoAddress(t *testing.T) {
	inPodNetns(t, "10.250.9.2/24", func() { // the node
		node, err := ns.GetCurrentNS()
		if err != nil {
			t.Fatal(err)
		}
		defer node.Close()
		before, err := NodeAddresses()
		if err != nil {
			t.Fatal(err)
		}
		pod, err := testutils.NewNS()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = pod.Close(); _ = testutils.UnmountNS(pod) })
		v := HostVeth{Host: "uptest", Pod: "host-net1"}
		if err := pod.Do(func(ns.NetNS) error {
			if _, _, err := v.makePair(1500, node); err != nil {
				return err
			}
			podEnd, err := netlink.LinkByName(v.Pod)
			if err != nil {
				return err
			}
			return netlink.LinkSetUp(podEnd) // the node end gets its carrier
		}); err != nil {
			t.Fatal(err)
		}
		host, err := netlink.LinkByName(v.Host)
		if err != nil {
			t.Fatal(err)
		}
		if host.Attrs().Flags&net.FlagUp == 0 {
			t.Fatalf("%s is down", v.Host)
		}
		// a link-local address appears (tentative) once the link is up with a carrier
		for range 10 {
			addrs, err := netlink.AddrList(host, netlink.FAMILY_ALL)
			if err != nil {
				t.Fatal(err)
			}
			if len(addrs) != 0 {
				t.Fatalf("the node end %s has addresses %v, want none", v.Host, addrs)
			}
			time.Sleep(50 * time.Millisecond)
		}
		after, err := NodeAddresses()
		if err != nil || !slices.Equal(before, after) {
			t.Fatalf("NodeAddresses %v (%v) after a host veth, want %v", after, err, before)
		}
	})
}
