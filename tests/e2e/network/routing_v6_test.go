package network

import (
	"fmt"
	"strings"
	"testing"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/tests/e2e"
)

// TestNetworkTwoSubnetsRepliesLeaveByTheirNIC for IPv6: a pod on two IPv6-only subnets,
// each NIC on its own parent. net1 holds the default route; net2 gets table 102 with a
// default via its pool's gateway and a "from <addr>/128" rule. A request from off net2's
// subnet (a remote address on the peer's lo), arriving on net2, is answered through net2:
// net1's gateway neither forwards nor owns that source, so a reply sent by net1 is lost,
// and the counters show which NIC sent the replies. The plugin waits out DAD on ADD, so
// the pod's addresses are usable when ADD returns. CHECK passes; DEL removes rules and table.
func TestNetworkTwoSubnetsRepliesLeaveByTheirNICv6(t *testing.T) {
	_, net1, x := e2e.NextSubnet()
	_, net2, y := e2e.NextSubnet()
	_, _, r := e2e.NextSubnet() // the "remote" side: fd00:250:0:r::/64, on no pod segment
	at := func(net int32, host int) string { return fmt.Sprintf("fd00:250:0:%x::%x", net, host) }
	gw1, gw2 := at(x, 1), at(y, 1)
	pool1 := e2e.NewPool(t, v1.IPPoolSpec{Subnet: net1, Gateway: gw1})
	pool2 := e2e.NewPool(t, v1.IPPoolSpec{Subnet: net2, Gateway: gw2})
	peer1 := e2e.NewPeer(t, nil, gw1+"/64", at(r, 1))
	peer2 := e2e.NewPeer(t, nil, gw2+"/64", at(r, 2))
	ns := e2e.NewNamespace(t)
	conf1 := e2e.NetConf{Delegate: e2e.MacvlanOn(peer1.Parent), IPv6Pools: []string{pool1.Name}}.Conflist(t)
	conf2 := e2e.NetConf{Delegate: e2e.MacvlanOn(peer2.Parent), IPv6Pools: []string{pool2.Name}}.Conflist(t)

	pod, rt1, rt2, res1, res2 := addTwoNICs(t, ns, "twonic6", conf1, conf2)
	ip1, ip2 := e2e.FirstIP(t, res1, false), e2e.FirstIP(t, res2, false)

	main := e2e.RoutesIn(t, pod, 0)
	e2e.RequireContains(t, "pod main table", main, "default via "+gw1+" dev net1")
	e2e.RequireLacks(t, "pod main table", main, "default via "+gw2)
	e2e.RequireContains(t, "table 102", e2e.RoutesIn(t, pod, 102), "default via "+gw2+" dev net2", net2+" dev net2")
	e2e.RequireContains(t, "pod rules", e2e.RulesIn(t, pod), "from "+ip2+"/128 lookup 102", "from "+ip1+"/128 lookup 101")
	// ADD waited for DAD: neither address may still be tentative (or have failed it)
	for _, c := range []struct{ ifName, ip string }{{"net1", ip1}, {"net2", ip2}} {
		out, err := pod.Run("ip", "-6", "addr", "show", "dev", c.ifName, "tentative")
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(out, c.ip) {
			t.Fatalf("%s on %s is still tentative after ADD:\n%s", c.ip, c.ifName, out)
		}
		if out, err := pod.Run("ip", "-6", "addr", "show", "dev", c.ifName, "dadfailed"); err != nil || strings.Contains(out, c.ip) {
			t.Fatalf("%s on %s failed DAD (%v):\n%s", c.ip, c.ifName, err, out)
		}
	}

	const count = 10
	tx1, tx2 := e2e.TxPackets(t, pod, "net1"), e2e.TxPackets(t, pod, "net2")
	if err := peer2.PingFromRemote(ip2, count); err != nil {
		t.Fatalf("a request routed in on net2 got no reply through net2: %v", err)
	}
	// net1 may send the odd router solicitation or MLD report meanwhile, never a reply
	// per request
	d1, d2 := e2e.TxPackets(t, pod, "net1")-tx1, e2e.TxPackets(t, pod, "net2")-tx2
	if d2 < count || d1 >= count {
		t.Fatalf("replies left by the wrong NIC: net1 sent %d, net2 sent %d packets for %d requests on net2", d1, d2, count)
	}
	t.Logf("%d requests on net2: net2 sent %d packets, net1 %d", count, d2, d1)
	if err := peer1.PingFromRemote(ip1, 3); err != nil {
		t.Fatalf("a request routed in on net1 got no reply: %v", err)
	}
	checkAndDelTwoNICs(t, pod, ns, conf1, conf2, rt1, rt2, pool1.Name, pool2.Name)
}
