package network

import (
	"fmt"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/types"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/tests/e2e"
	"github.com/underpool/underpool/tests/harness"
)

// Subnet < IPPool < pod annotation: a later level overrides an earlier one for the same
// destination, an annotation entry for another interface is not applied, and the
// kernel's routing table in the pod says so.
func TestNetworkRouteLevels(t *testing.T) {
	v4net, _, x := e2e.NextSubnet()
	at := func(host int) string { return fmt.Sprintf("10.250.%d.%d", x, host) }
	e2e.NewSubnet(t, v1.SubnetSpec{Subnet: v4net, Gateway: at(1), Routes: []v1.Route{
		{Dst: "10.250.101.0/24", Gw: at(1)}, {Dst: "10.250.102.0/24", Gw: at(1)}, {Dst: "10.250.103.0/24", Gw: at(1)}}})
	pool := e2e.NewPool(t, v1.IPPoolSpec{Subnet: v4net, Gateway: at(1), Routes: []v1.Route{
		{Dst: "10.250.102.0/24", Gw: at(2)}, {Dst: "10.250.103.0/24", Gw: at(2)}}})
	ns := e2e.NewNamespace(t)
	conf := e2e.NetConf{Delegate: e2e.MacvlanOn(e2e.NewParent(t)), IPv4Pools: []string{pool.Name}}.Conflist(t)

	pod := e2e.NewPodNS(t)
	annotation := fmt.Sprintf(`[{"dst":"10.250.103.0/24","gw":"%s","interface":"net1"},{"dst":"10.250.104.0/24","gw":"%s","interface":"net2"}]`, at(3), at(3))
	rt := e2e.RuntimeOf(e2e.NewPod(t, ns, "routed", map[string]string{"ipam.underpool.io/routes": annotation}, nil, nil), pod, "net1")
	if _, err := e2e.Suite.CNI.Add(e2e.Ctx(t), conf, rt); err != nil {
		t.Fatalf("ADD: %v", err)
	}
	got := e2e.RoutesIn(t, pod, 0)
	e2e.RequireContains(t, "pod main table", got,
		"default via "+at(1)+" dev net1",
		"10.250.102.0/24 via "+at(2)+" dev net1", // pool overrides subnet
		"10.250.103.0/24 via "+at(3)+" dev net1", // annotation overrides pool
	)
	e2e.RequireLacks(t, "pod main table", got, "10.250.104.0/24") // for net2 only
	t.Run("subnet level", func(t *testing.T) {
		// ipamd's job: the Subnet whose CIDR holds the pool's gives the lowest level
		e2e.RequireContains(t, "pod main table", got, "10.250.101.0/24 via "+at(1)+" dev net1")
	})
	e2e.RequireInvariants(t, e2e.AttachmentsOf(rt), pool.Name)
	if err := e2e.Suite.CNI.Check(e2e.Ctx(t), conf, rt); err != nil {
		t.Fatalf("CHECK: %v", err)
	}
	if err := e2e.Suite.CNI.Del(e2e.Ctx(t), conf, rt); err != nil {
		t.Fatalf("DEL: %v", err)
	}

	bad := e2e.RuntimeOf(e2e.NewPod(t, ns, "badroutes", map[string]string{"ipam.underpool.io/routes": `[{"dst":"10.250.105.0/24"},{"dst":"10.250.106.0"}]`}, nil, nil), e2e.NewPodNS(t), "net1")
	_, err := e2e.Suite.CNI.Add(e2e.Ctx(t), conf, bad)
	if err == nil || !strings.Contains(err.Error(), "ipam.underpool.io/routes") || !strings.Contains(err.Error(), "entry 1") {
		t.Fatalf("a malformed annotation must fail ADD naming it and the entry, got %v", err)
	}
	e2e.RequireNothingLeft(t, ns, pool.Name)
}

// A pod on two subnets, each NIC on its own parent: net1 holds the default route, net2
// gets table 102 and a rule for its address. A request from off net2's subnet, arriving
// on net2, is answered through net2 (net1's gateway would drop it: it neither forwards nor
// owns the source), and counters show the replies left by net2. DEL removes rule and table.
func TestNetworkTwoSubnetsRepliesLeaveByTheirNIC(t *testing.T) {
	_, _, x := e2e.NextSubnet()
	_, _, y := e2e.NextSubnet()
	_, _, r := e2e.NextSubnet()
	at := func(net, host int32) string { return fmt.Sprintf("10.250.%d.%d", net, host) }
	pool1 := e2e.NewPool(t, v1.IPPoolSpec{Subnet: at(x, 0) + "/24", Gateway: at(x, 1)})
	pool2 := e2e.NewPool(t, v1.IPPoolSpec{Subnet: at(y, 0) + "/24", Gateway: at(y, 1)})
	peer1 := e2e.NewPeer(t, nil, at(x, 1)+"/24", at(r, 1))
	peer2 := e2e.NewPeer(t, nil, at(y, 1)+"/24", at(r, 2))
	ns := e2e.NewNamespace(t)
	conf1 := e2e.NetConf{Delegate: e2e.MacvlanOn(peer1.Parent), IPv4Pools: []string{pool1.Name}}.Conflist(t)
	conf2 := e2e.NetConf{Delegate: e2e.MacvlanOn(peer2.Parent), IPv4Pools: []string{pool2.Name}}.Conflist(t)

	pod, rt1, rt2, res1, res2 := addTwoNICs(t, ns, "twonic", conf1, conf2)
	ip1, ip2 := e2e.FirstIP(t, res1, true), e2e.FirstIP(t, res2, true)

	e2e.RequireContains(t, "pod main table", e2e.RoutesIn(t, pod, 0), "default via "+at(x, 1)+" dev net1")
	e2e.RequireLacks(t, "pod main table", e2e.RoutesIn(t, pod, 0), "default via "+at(y, 1))
	e2e.RequireContains(t, "table 102", e2e.RoutesIn(t, pod, 102), "default via "+at(y, 1)+" dev net2", at(y, 0)+"/24 dev net2")
	e2e.RequireContains(t, "pod rules", e2e.RulesIn(t, pod), "from "+ip2+"/32 lookup 102", "from "+ip1+"/32 lookup 101")
	if v, err := pod.Run("sysctl", "-n", "net.ipv4.conf.net2.rp_filter"); err != nil || strings.TrimSpace(v) != "2" {
		t.Fatalf("rp_filter on net2 = %q (%v), want 2 (loose)", v, err)
	}

	const count = 10
	tx1, tx2 := e2e.TxPackets(t, pod, "net1"), e2e.TxPackets(t, pod, "net2")
	if err := peer2.PingFromRemote(ip2, count); err != nil {
		t.Fatalf("a request routed in on net2 got no reply through net2: %v", err)
	}
	if d1, d2 := e2e.TxPackets(t, pod, "net1")-tx1, e2e.TxPackets(t, pod, "net2")-tx2; d2 < count || d1 >= count {
		t.Fatalf("replies left by the wrong NIC: net1 sent %d, net2 sent %d packets for %d requests on net2", d1, d2, count)
	}
	if err := peer1.PingFromRemote(ip1, 3); err != nil {
		t.Fatalf("a request routed in on net1 got no reply: %v", err)
	}
	checkAndDelTwoNICs(t, pod, ns, conf1, conf2, rt1, rt2, pool1.Name, pool2.Name)
}

// Overlay + underlay: eth0 comes from another CNI (the bridge plugin with host-local, run
// in a netns standing for the node) and holds the default route, so cluster and service
// traffic keeps going through it; net1 from underpool gets its subnet, its own table and a
// rule, and answers requests routed in on it.
func TestNetworkOverlayKeepsDefaultUnderlayGetsItsTable(t *testing.T) {
	_, _, o := e2e.NextSubnet()
	_, _, x := e2e.NextSubnet()
	_, _, r := e2e.NextSubnet()
	at := func(net, host int32) string { return fmt.Sprintf("10.250.%d.%d", net, host) }
	node := e2e.NewNodeNS(t)
	cni := e2e.NodeCNI(t, node)
	overlay := e2e.ClusterNetwork(t, "cni-ovl0", at(o, 0)+"/24")
	pool := e2e.NewPool(t, v1.IPPoolSpec{Subnet: at(x, 0) + "/24", Gateway: at(x, 1)})
	peer := e2e.NewPeer(t, node, at(x, 1)+"/24", at(r, 1))
	ns := e2e.NewNamespace(t)
	under := e2e.NetConf{Delegate: e2e.MacvlanOn(peer.Parent), IPv4Pools: []string{pool.Name}}.Conflist(t)

	pod := e2e.NewPodNS(t)
	rt0, rt1 := e2e.RuntimeFor(pod, ns, "mixed", "eth0"), e2e.RuntimeFor(pod, ns, "mixed", "net1")
	if _, err := cni.Add(e2e.Ctx(t), overlay, rt0); err != nil {
		t.Fatalf("overlay ADD: %v", err)
	}
	res, err := cni.Add(e2e.Ctx(t), under, rt1)
	if err != nil {
		t.Fatalf("underlay ADD: %v", err)
	}
	ip1 := e2e.FirstIP(t, res, true)
	main := e2e.RoutesIn(t, pod, 0)
	e2e.RequireContains(t, "pod main table", main, "default via "+at(o, 1)+" dev eth0", at(x, 0)+"/24 dev net1")
	e2e.RequireLacks(t, "pod main table", main, "default via "+at(x, 1))
	e2e.RequireContains(t, "table 101", e2e.RoutesIn(t, pod, 101), "default via "+at(x, 1)+" dev net1")
	e2e.RequireContains(t, "pod rules", e2e.RulesIn(t, pod), "from "+ip1+"/32 lookup 101")
	// service and cluster CIDRs are whatever eth0's default covers
	if out, err := pod.Run("ip", "-4", "route", "get", "10.96.0.10"); err != nil || !strings.Contains(out, "dev eth0") {
		t.Fatalf("service traffic does not leave by eth0: %s %v", out, err)
	}
	if err := peer.PingFromRemote(ip1, 3); err != nil {
		t.Fatalf("a request routed in on net1 got no reply through net1: %v", err)
	}
	e2e.RequireInvariants(t, e2e.AttachmentsOf(rt1), pool.Name)
	if err := cni.Del(e2e.Ctx(t), under, rt1); err != nil {
		t.Fatalf("underlay DEL: %v", err)
	}
	e2e.RequireLacks(t, "pod rules after DEL", e2e.RulesIn(t, pod), "lookup 101")
	e2e.RequireContains(t, "pod main table after DEL", e2e.RoutesIn(t, pod, 0), "default via "+at(o, 1)+" dev eth0")
	if err := cni.Del(e2e.Ctx(t), overlay, rt0); err != nil {
		t.Fatalf("overlay DEL: %v", err)
	}
	e2e.RequireNothingLeft(t, ns, pool.Name)
}

// checkAndDelTwoNICs ends a two-NIC routing test: CHECK passes on both attachments, DEL of
// net2 takes its table 102 and rules, DEL of net1 leaves no rule, and both pools are empty.
func checkAndDelTwoNICs(t *testing.T, pod *harness.NetNS, ns string, conf1, conf2 []byte, rt1, rt2 harness.Runtime, pool1, pool2 string) {
	t.Helper()
	e2e.RequireInvariants(t, e2e.AttachmentsOf(rt1, rt2), pool1, pool2)
	for _, c := range []struct {
		conf []byte
		rt   harness.Runtime
	}{{conf1, rt1}, {conf2, rt2}} {
		if err := e2e.Suite.CNI.Check(e2e.Ctx(t), c.conf, c.rt); err != nil {
			t.Fatalf("CHECK %s: %v", c.rt.IfName, err)
		}
	}
	if err := e2e.Suite.CNI.Del(e2e.Ctx(t), conf2, rt2); err != nil {
		t.Fatalf("DEL net2: %v", err)
	}
	e2e.RequireLacks(t, "pod rules after DEL net2", e2e.RulesIn(t, pod), "lookup 102")
	if left := e2e.RoutesIn(t, pod, 102); len(left) != 0 {
		t.Fatalf("table 102 not empty after DEL: %v", left)
	}
	if err := e2e.Suite.CNI.Del(e2e.Ctx(t), conf1, rt1); err != nil {
		t.Fatalf("DEL net1: %v", err)
	}
	if left := e2e.RulesIn(t, pod); len(left) != 0 {
		t.Fatalf("rules left after DEL: %v", left)
	}
	e2e.RequireNothingLeft(t, ns, pool1, pool2)
}

// addTwoNICs attaches net1 then net2 to one new pod, as a two-NIC routing test starts.
func addTwoNICs(t *testing.T, ns, pod string, conf1, conf2 []byte) (*harness.NetNS, harness.Runtime, harness.Runtime, types.Result, types.Result) {
	t.Helper()
	netns := e2e.NewPodNS(t)
	rt1, rt2 := e2e.RuntimeFor(netns, ns, pod, "net1"), e2e.RuntimeFor(netns, ns, pod, "net2")
	res1, err := e2e.Suite.CNI.Add(e2e.Ctx(t), conf1, rt1)
	if err != nil {
		t.Fatalf("ADD net1: %v", err)
	}
	res2, err := e2e.Suite.CNI.Add(e2e.Ctx(t), conf2, rt2)
	if err != nil {
		t.Fatalf("ADD net2: %v", err)
	}
	return netns, rt1, rt2, res1, res2
}
