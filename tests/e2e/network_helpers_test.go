package e2e

import (
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/types"
	"github.com/vishvananda/netlink"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"

	"github.com/underpool/underpool/tests/harness"
)

// nwPeer is the rest of an L2 segment: a netns holding the far end of a veth whose near
// end is a macvlan parent. It owns the segment's gateway address and, on lo, a "remote"
// address off the segment, so a request from it stands for traffic routed in from
// elsewhere, whose reply must go back through this segment's gateway.
type nwPeer struct {
	ns     *harness.NetNS
	parent string // near end, in node (nil: root netns)
	remote string // off-subnet source address on lo
}

// newPeer makes the segment; node nil puts the parent in the root netns (a throw-away
// veth), otherwise in the netns standing for the node.
func newPeer(t *testing.T, node *harness.NetNS, gwCIDR, remote string) nwPeer {
	t.Helper()
	a, b := harness.UniqueName("nwa"), harness.UniqueName("nwb")
	v, err := harness.NewVethPairIn(node, a, b)
	if err != nil {
		t.Fatalf("veth: %v", err)
	}
	t.Cleanup(func() { _ = v.Close() })
	peer := newPodNS(t)
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
	return nwPeer{ns: peer, parent: a, remote: remote}
}

// pingFromRemote pings dst (IPv4 or IPv6) from the peer's off-subnet address: it
// succeeds only if the pod's reply comes back through this peer's segment.
func (p nwPeer) pingFromRemote(dst string, count int) error {
	family := "-4"
	if strings.Contains(dst, ":") {
		family = "-6"
	}
	_, err := p.ns.Run("ping", family, "-c", fmt.Sprint(count), "-i", "0.2", "-W", "1", "-I", p.remote, dst)
	return err
}

// hostBits is the prefix length of a single address of addr's family: "/32" or "/128".
func hostBits(addr string) string {
	if strings.Contains(addr, ":") {
		return "/128"
	}
	return "/32"
}

// nwConf is the underpool meta-plugin with any extra top-level fields (routing, checks,
// ...) and any delegate.
type nwConf struct {
	Name      string
	Delegate  map[string]any
	IPv4Pools []string
	IPv6Pools []string
	Extra     map[string]any
}

func macvlanOn(master string) map[string]any {
	return map[string]any{"type": "macvlan", "master": master, "mode": "bridge"}
}

func (c nwConf) conflist(t *testing.T) []byte {
	t.Helper()
	if c.Name == "" {
		c.Name = "nw-" + rand.String(5)
	}
	plugin := map[string]any{
		"type": "underpool", "delegate": c.Delegate,
		"ipam":    map[string]any{"socket": suite.ipamd.Options.Socket, "ipv4Pools": c.IPv4Pools, "ipv6Pools": c.IPv6Pools},
		"logFile": filepath.Join(suite.dir, "plugin.log"),
	}
	// most tests run the plugin in the machine's own netns, which must never get a host
	// veth: host connectivity is tested in a netns standing for the node
	plugin["hostConnectivity"] = map[string]any{"enabled": false}
	for k, v := range c.Extra {
		plugin[k] = v
	}
	return mustJSON(t, map[string]any{"cniVersion": "1.1.0", "name": c.Name, "plugins": []any{plugin}})
}

// nwPod creates a Pod object (bound to this node) so ipamd can read its annotations,
// and returns the runtime description with the Pod's real UID.
func nwPod(t *testing.T, namespace, name string, annotations map[string]string, podNS *harness.NetNS, ifName string) harness.Runtime {
	t.Helper()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name, Annotations: annotations},
		Spec:       corev1.PodSpec{NodeName: nodeName, Containers: []corev1.Container{{Name: "c", Image: "none"}}},
	}
	if err := suite.client.Create(ctx(t), pod); err != nil {
		t.Fatalf("creating pod %s: %v", name, err)
	}
	rt := runtimeFor(podNS, namespace, name, ifName)
	rt.PodUID = string(pod.UID)
	return rt
}

// routesIn lists the routes of one table (0: main) in a netns, as "dst via gw dev if".
func routesIn(t *testing.T, n *harness.NetNS, table int) []string {
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

// rulesIn lists the "from X lookup T" rules of a netns.
func rulesIn(t *testing.T, n *harness.NetNS) []string {
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

func requireContains(t *testing.T, what string, got []string, want ...string) {
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

func requireLacks(t *testing.T, what string, got []string, unwanted ...string) {
	t.Helper()
	for _, u := range unwanted {
		for _, g := range got {
			if strings.Contains(g, u) {
				t.Fatalf("%s still has %q:\n  %s", what, g, strings.Join(got, "\n  "))
			}
		}
	}
}

// txPackets reads a link's transmit counter inside a netns.
func txPackets(t *testing.T, n *harness.NetNS, ifName string) uint64 {
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

// firstIP returns the result's first address of a family.
func firstIP(t *testing.T, r types.Result, v4 bool) string {
	t.Helper()
	a4, a6 := ipsOf(t, r)
	if v4 && len(a4) > 0 {
		return a4[0].String()
	}
	if !v4 && len(a6) > 0 {
		return a6[0].String()
	}
	t.Fatalf("no address of the family in %v", r)
	return ""
}

// checkAndDelTwoNICs ends a two-NIC routing test: CHECK passes on both attachments, DEL of
// net2 takes its table 102 and rules, DEL of net1 leaves no rule, and both pools are empty.
func checkAndDelTwoNICs(t *testing.T, pod *harness.NetNS, ns string, conf1, conf2 []byte, rt1, rt2 harness.Runtime, pool1, pool2 string) {
	t.Helper()
	for _, c := range []struct {
		conf []byte
		rt   harness.Runtime
	}{{conf1, rt1}, {conf2, rt2}} {
		if err := suite.cni.Check(ctx(t), c.conf, c.rt); err != nil {
			t.Fatalf("CHECK %s: %v", c.rt.IfName, err)
		}
	}
	if err := suite.cni.Del(ctx(t), conf2, rt2); err != nil {
		t.Fatalf("DEL net2: %v", err)
	}
	requireLacks(t, "pod rules after DEL net2", rulesIn(t, pod), "lookup 102")
	if left := routesIn(t, pod, 102); len(left) != 0 {
		t.Fatalf("table 102 not empty after DEL: %v", left)
	}
	if err := suite.cni.Del(ctx(t), conf1, rt1); err != nil {
		t.Fatalf("DEL net1: %v", err)
	}
	if left := rulesIn(t, pod); len(left) != 0 {
		t.Fatalf("rules left after DEL: %v", left)
	}
	requireEmpty(t, pool1, ns)
	requireEmpty(t, pool2, ns)
}

// addTwoNICs attaches net1 then net2 to one new pod, as a two-NIC routing test starts.
func addTwoNICs(t *testing.T, ns, pod string, conf1, conf2 []byte) (*harness.NetNS, harness.Runtime, harness.Runtime, types.Result, types.Result) {
	t.Helper()
	netns := newPodNS(t)
	rt1, rt2 := runtimeFor(netns, ns, pod, "net1"), runtimeFor(netns, ns, pod, "net2")
	res1, err := suite.cni.Add(ctx(t), conf1, rt1)
	if err != nil {
		t.Fatalf("ADD net1: %v", err)
	}
	res2, err := suite.cni.Add(ctx(t), conf2, rt2)
	if err != nil {
		t.Fatalf("ADD net2: %v", err)
	}
	return netns, rt1, rt2, res1, res2
}
