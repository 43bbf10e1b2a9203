package guest

import (
	"fmt"
	"slices"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/underpool/underpool/tests/harness"
)

// newNetNS makes a network namespace (a pod's, or one standing for the node or the segment),
// removed when the test ends.
func newNetNS(t *testing.T, prefix string) *harness.NetNS {
	t.Helper()
	n, err := harness.NewNetNS(harness.UniqueName(prefix))
	if err != nil {
		t.Fatalf("netns: %v", err)
	}
	t.Cleanup(func() { _ = n.Close() })
	if err := harness.LinkSetUp(n, "lo"); err != nil {
		t.Fatal(err)
	}
	return n
}

// segment is the node's uplink and the L2 segment behind it: a veth whose near end (the
// master the delegates hang off) is in the node's netns with the node's address, and whose
// far end is in a netns of its own holding the segment's gateway address.
type segment struct {
	node, gateway *harness.NetNS
	master        string // in node
	far           string // the other end, in gateway
	nodeAddr      string // on master
	gatewayAddr   string // on the far end
}

// newSegment makes node netns, master and gateway for 10.250.x.0/24: the gateway is .1, the
// node .254.
func newSegment(t *testing.T, x int32) segment {
	t.Helper()
	s := segment{node: newNetNS(t, "node"), gateway: newNetNS(t, "gw"),
		nodeAddr: fmt.Sprintf("10.250.%d.254", x), gatewayAddr: fmt.Sprintf("10.250.%d.1", x)}
	s.master = harness.UniqueName("ens")
	s.far = harness.UniqueName("seg")
	v, err := harness.NewVethPairIn(s.node, s.master, s.far)
	if err != nil {
		t.Fatalf("segment veth: %v", err)
	}
	t.Cleanup(func() { _ = v.Close() })
	if err := v.MoveB(s.gateway); err != nil {
		t.Fatal(err)
	}
	if err := harness.AddAddr(s.node, s.master, s.nodeAddr+"/24"); err != nil {
		t.Fatal(err)
	}
	if err := harness.AddAddr(s.gateway, s.far, s.gatewayAddr+"/24"); err != nil {
		t.Fatal(err)
	}
	return s
}

// routePodsToNode makes the gateway route each pod address to the node, as an L3 ipvlan
// deployment needs: in l3 and l3s modes the pods' links answer no ARP (ipvlan makes them
// NOARP), so the segment reaches the pods only through routes via the node (static or from
// BGP), never by resolving their addresses on the wire.
func (s segment) routePodsToNode(t *testing.T, ips ...string) {
	t.Helper()
	for _, ip := range ips {
		if _, err := s.gateway.Run("ip", "route", "add", ip+"/32", "via", s.nodeAddr); err != nil {
			t.Fatal(err)
		}
	}
}

// linksIn names the links in a netns.
func linksIn(t *testing.T, n *harness.NetNS) []string {
	t.Helper()
	var names []string
	err := n.Do(func() error {
		links, err := netlink.LinkList()
		for _, l := range links {
			names = append(names, l.Attrs().Name)
		}
		return err
	})
	if err != nil {
		t.Fatalf("listing links in %s: %v", n.Name(), err)
	}
	slices.Sort(names)
	return names
}

// linkKind is the kind of a link ("ipvlan", "veth", ...) and its ipvlan mode, if any.
func linkKind(t *testing.T, n *harness.NetNS, name string) (kind string, ipvlanMode string) {
	t.Helper()
	err := n.Do(func() error {
		l, err := netlink.LinkByName(name)
		if err != nil {
			return err
		}
		kind = l.Type()
		if iv, ok := l.(*netlink.IPVlan); ok {
			ipvlanMode = map[netlink.IPVlanMode]string{netlink.IPVLAN_MODE_L2: "l2", netlink.IPVLAN_MODE_L3: "l3", netlink.IPVLAN_MODE_L3S: "l3s"}[iv.Mode]
		}
		return nil
	})
	if err != nil {
		t.Fatalf("link %s in %s: %v", name, n.Name(), err)
	}
	return kind, ipvlanMode
}
