package e2e

import (
	"fmt"
	"net"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/underpool/underpool/tests/harness"
)

// Network namespaces and links the tests make, and what they read back from the kernel.

// NewParent makes a throw-away veth pair in the root netns; macvlans hang off end A.
func NewParent(t *testing.T) string {
	t.Helper()
	a, b := harness.UniqueName("upa"), harness.UniqueName("upb")
	v, err := harness.NewVethPair(a, b)
	if err != nil {
		t.Fatalf("veth parent: %v", err)
	}
	t.Cleanup(func() { _ = v.Close() })
	return a
}

// NewPodNS makes a network namespace (a pod's, or one standing for a node), removed when
// the test ends.
func NewPodNS(t *testing.T) *harness.NetNS {
	t.Helper()
	n, err := harness.NewNetNS(harness.UniqueName("pod"))
	if err != nil {
		t.Fatalf("netns: %v", err)
	}
	t.Cleanup(func() { _ = n.Close() })
	return n
}

// NewNodeNS makes a netns standing for a node, its loopback up.
func NewNodeNS(t *testing.T) *harness.NetNS {
	t.Helper()
	node := NewPodNS(t)
	if err := harness.LinkSetUp(node, "lo"); err != nil {
		t.Fatal(err)
	}
	return node
}

// Peer is the rest of an L2 segment: a netns holding the far end of a veth whose near
// end is a macvlan parent. It owns the segment's gateway address and, on lo, a "remote"
// address off the segment, so a request from it stands for traffic routed in from
// elsewhere, whose reply must go back through this segment's gateway.
type Peer struct {
	NS     *harness.NetNS
	Parent string // near end, in node (nil: root netns)
	End    string // far end, in ns
	remote string // off-subnet source address on lo
}

// NewPeer makes the segment; node nil puts the parent in the root netns (a throw-away
// veth), otherwise in the netns standing for the node.
func NewPeer(t *testing.T, node *harness.NetNS, gwCIDR, remote string) Peer {
	t.Helper()
	a, b := harness.UniqueName("nwa"), harness.UniqueName("nwb")
	v, err := harness.NewVethPairIn(node, a, b)
	if err != nil {
		t.Fatalf("veth: %v", err)
	}
	t.Cleanup(func() { _ = v.Close() })
	peer := NewPodNS(t)
	if err := v.MoveB(peer); err != nil {
		t.Fatal(err)
	}
	if err := harness.LinkSetUp(peer, "lo"); err != nil {
		t.Fatal(err)
	}
	if err := harness.AddAddr(peer, b, gwCIDR); err != nil {
		t.Fatal(err)
	}
	if remote != "" {
		if err := harness.AddAddr(peer, "lo", remote+hostBits(remote)); err != nil {
			t.Fatal(err)
		}
	}
	return Peer{NS: peer, Parent: a, End: b, remote: remote}
}

// PingFromRemote pings dst (IPv4 or IPv6) from the peer's off-subnet address: it
// succeeds only if the pod's reply comes back through this peer's segment.
func (p Peer) PingFromRemote(dst string, count int) error {
	family := "-4"
	if strings.Contains(dst, ":") {
		family = "-6"
	}
	_, err := p.NS.Run("ping", family, "-c", fmt.Sprint(count), "-i", "0.2", "-W", "1", "-I", p.remote, dst)
	return err
}

// netlinkHandleAt opens a netlink handle inside a netns without switching this thread.
func netlinkHandleAt(nsPath string) (*netlink.Handle, error) {
	ns, err := netns.GetFromPath(nsPath)
	if err != nil {
		return nil, err
	}
	defer ns.Close()
	return netlink.NewHandleAt(ns)
}

// MACOf reads a link's MAC inside the netns at nsPath.
func MACOf(t *testing.T, nsPath, ifName string) string {
	t.Helper()
	h, err := netlinkHandleAt(nsPath)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	l, err := h.LinkByName(ifName)
	if err != nil {
		t.Fatal(err)
	}
	return l.Attrs().HardwareAddr.String()
}

// LinksIn names the links in a netns.
func LinksIn(pod *harness.NetNS) ([]string, error) {
	var names []string
	err := pod.Do(func() error {
		links, err := netlink.LinkList()
		for _, l := range links {
			names = append(names, l.Attrs().Name)
		}
		return err
	})
	return names, err
}

// HasLink reports whether the netns has a link of this name.
func HasLink(t *testing.T, n *harness.NetNS, name string) bool {
	t.Helper()
	found := false
	err := n.Do(func() error {
		_, err := netlink.LinkByName(name)
		found = err == nil
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return found
}

// TxPackets reads a link's transmit counter inside a netns.
func TxPackets(t *testing.T, n *harness.NetNS, ifName string) uint64 {
	t.Helper()
	var tx uint64
	err := n.Do(func() error {
		l, err := netlink.LinkByName(ifName)
		if err == nil {
			tx = l.Attrs().Statistics.TxPackets
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return tx
}

// AddrOf is the first IPv4 address of an interface in the pod.
func AddrOf(t *testing.T, pod *harness.NetNS, ifName string) string {
	t.Helper()
	addrs, err := harness.Addrs(pod.Path(), ifName)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		if a.IP.To4() != nil {
			return a.IP.String()
		}
	}
	t.Fatalf("%s has no IPv4 address", ifName)
	return ""
}

// RoutesIn lists the routes of one table (0: main) in a netns, as "dst via gw dev if".
func RoutesIn(t *testing.T, n *harness.NetNS, table int) []string {
	t.Helper()
	var out []string
	err := n.Do(func() error {
		filter := &netlink.Route{Table: table}
		mask := netlink.RT_FILTER_TABLE
		if table == 0 {
			filter, mask = &netlink.Route{}, 0
		}
		for _, family := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
			rs, err := netlink.RouteListFiltered(family, filter, mask)
			if err != nil {
				return err
			}
			for _, r := range rs {
				out = append(out, routeString(r))
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("listing routes: %v", err)
	}
	return out
}

func routeString(r netlink.Route) string {
	dst := "default"
	if r.Dst != nil && !(r.Dst.IP.IsUnspecified() && maskBits(r.Dst) == 0) {
		dst = r.Dst.String()
	}
	s := dst
	if r.Gw != nil {
		s += " via " + r.Gw.String()
	}
	if l, err := netlink.LinkByIndex(r.LinkIndex); err == nil {
		s += " dev " + l.Attrs().Name
	}
	return s
}

func maskBits(n *net.IPNet) int { ones, _ := n.Mask.Size(); return ones }

// RulesIn lists the "from X lookup T" rules of a netns.
func RulesIn(t *testing.T, n *harness.NetNS) []string {
	t.Helper()
	var out []string
	err := n.Do(func() error {
		for _, family := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
			rules, err := netlink.RuleList(family)
			if err != nil {
				return err
			}
			for _, r := range rules {
				if r.Src != nil {
					out = append(out, fmt.Sprintf("from %s lookup %d", r.Src, r.Table))
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("listing rules: %v", err)
	}
	return out
}

// RequireContains fails the test unless got has every wanted line exactly.
func RequireContains(t *testing.T, what string, got []string, want ...string) {
	t.Helper()
	for _, w := range want {
		found := false
		for _, g := range got {
			found = found || g == w
		}
		if !found {
			t.Fatalf("%s lacks %q:\n  %s", what, w, strings.Join(got, "\n  "))
		}
	}
}

// RequireLacks fails the test if any line of got contains an unwanted string.
func RequireLacks(t *testing.T, what string, got []string, unwanted ...string) {
	t.Helper()
	for _, u := range unwanted {
		for _, g := range got {
			if strings.Contains(g, u) {
				t.Fatalf("%s still has %q:\n  %s", what, g, strings.Join(got, "\n  "))
			}
		}
	}
}

// RequireDefaultRoute fails the test unless the pod has an IPv4 default route via gw.
func RequireDefaultRoute(t *testing.T, pod *harness.NetNS, gw string) {
	t.Helper()
	var found bool
	err := pod.Do(func() error {
		routes, err := netlink.RouteList(nil, netlink.FAMILY_V4)
		for _, r := range routes {
			if (r.Dst == nil || r.Dst.String() == "0.0.0.0/0") && r.Gw.String() == gw {
				found = true
			}
		}
		return err
	})
	if err != nil || !found {
		t.Fatalf("no default route via %s in the pod (%v)", gw, err)
	}
}

// KernelHas reports whether a link of this kind can be made (in a throw-away netns).
func KernelHas(kind string) error {
	n, err := harness.NewNetNS(harness.UniqueName("probe"))
	if err != nil {
		return err
	}
	defer n.Close()
	_, err = n.Run("sh", "-c", "ip link add probe-p type veth peer name probe-q && ip link add probe-x link probe-p type "+kind)
	return err
}
