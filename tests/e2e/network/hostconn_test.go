package network

import (
	"fmt"
	"strings"
	"testing"

	current "github.com/containernetworking/cni/pkg/types/100"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/tests/e2e"
	"github.com/underpool/underpool/tests/harness"
)

// A macvlan pod cannot reach its own parent's node. With host connectivity (on by
// default for an underlay-only pod) a veth pair joins them: the pod reaches the node's
// address on the very parent it hangs off, the node reaches the pod, the service CIDR
// goes via the node, CHECK names a missing node-side route, and DEL leaves the node's
// links, addresses, routes and rules exactly as they were. The plugin runs in a netns
// standing for the node.
func TestNetworkHostConnectivity(t *testing.T) {
	v4net, v6net, x := e2e.NextSubnet()
	at4 := func(h int) string { return fmt.Sprintf("10.250.%d.%d", x, h) }
	at6 := func(h int) string { return fmt.Sprintf("fd00:250:0:%x::%d", x, h) }
	pool4 := e2e.NewPool(t, v1.IPPoolSpec{Subnet: v4net, Gateway: at4(1), IPs: []string{at4(10) + "-" + at4(99)}})
	pool6 := e2e.NewPool(t, v1.IPPoolSpec{Subnet: v6net, Gateway: at6(1), IPs: []string{at6(10) + "-" + at6(99)}})
	node := e2e.NewNodeNS(t)
	// no DAD on the node's links: a link-local address turning from tentative to
	// valid during the test would read as a change
	if out, err := node.Run("sysctl", "-w", "net.ipv6.conf.default.accept_dad=0"); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	peer := e2e.NewPeer(t, node, at4(1)+"/24", "")
	for _, a := range []string{at4(2) + "/24", at6(2) + "/64"} { // the node's own addresses, on the parent
		if err := harness.AddAddr(node, peer.Parent, a); err != nil {
			t.Fatal(err)
		}
	}
	// the kernel inserts an IPv6 address's local route from a work queue, after the add
	// returns: on a loaded machine the snapshot below could miss it and see it appear later
	e2e.WaitFor(t, "the local route of the node's "+at6(2), func() bool {
		out, err := node.Run("ip", "-6", "route", "show", "table", "local")
		return err == nil && strings.Contains(out, "local "+at6(2)+" ")
	})
	cni := e2e.NodeCNI(t, node)
	const svc4, svc6 = "10.250.240.0/24", "fd00:250::f000/116"
	conf := e2e.NetConf{Delegate: e2e.MacvlanOn(peer.Parent), IPv4Pools: []string{pool4.Name}, IPv6Pools: []string{pool6.Name},
		Extra: map[string]any{"hostConnectivity": map[string]any{"serviceCIDRs": []string{svc4, svc6}}}}.Conflist(t)
	ns := e2e.NewNamespace(t)
	before := e2e.ReadNodeState(t, node)

	pod := e2e.NewPodNS(t)
	rt := e2e.RuntimeFor(pod, ns, "hostconn", "net1")
	res, err := cni.Add(e2e.Ctx(t), conf, rt)
	if err != nil {
		t.Fatalf("ADD: %v", err)
	}
	ip4, ip6 := e2e.FirstIP(t, res, true), e2e.FirstIP(t, res, false)
	hostVeth := hostVethOf(t, res)
	for _, dst := range []string{at4(2), at6(2)} {
		if err := harness.Ping(pod, dst, 3); err != nil {
			t.Fatalf("the pod cannot reach its node's %s: %v", dst, err)
		}
	}
	for _, dst := range []string{ip4, ip6} {
		if err := harness.Ping(node, dst, 3); err != nil {
			t.Fatalf("the node cannot reach its pod's %s: %v", dst, err)
		}
	}
	if err := harness.Ping(pod, at4(1), 3); err != nil {
		t.Fatalf("the pod lost its segment: %v", err)
	}
	for dst, via := range map[string]string{"10.250.240.10": at4(2), "fd00:250::f00a": at6(2)} {
		if out, err := pod.Run("ip", "route", "get", dst); err != nil || !strings.Contains(out, "via "+via+" dev host-net1") {
			t.Fatalf("service address %s does not go via the node: %s %v", dst, out, err)
		}
	}
	for _, fam := range []string{"ipv4", "ipv6"} {
		if v, err := node.Run("sysctl", "-n", "net."+fam+".conf."+hostVeth+".forwarding"); err != nil || strings.TrimSpace(v) != "1" {
			t.Fatalf("%s forwarding on %s = %q (%v), want 1 for the service CIDR", fam, hostVeth, v, err)
		}
	}
	e2e.RequireInvariants(t, e2e.AttachmentsOf(rt), pool4.Name, pool6.Name)
	if err := cni.Check(e2e.Ctx(t), conf, rt); err != nil {
		t.Fatalf("CHECK: %v", err)
	}
	if out, err := node.Run("ip", "route", "del", ip4+"/32", "dev", hostVeth); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	want := "missing route " + ip4 + "/32 dev " + hostVeth + " (node)"
	if err := cni.Check(e2e.Ctx(t), conf, rt); err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("CHECK must name %q, got %v", want, err)
	}
	for range 2 { // DEL is idempotent
		if err := cni.Del(e2e.Ctx(t), conf, rt); err != nil {
			t.Fatalf("DEL: %v", err)
		}
	}
	e2e.RequireSameNode(t, "after DEL", before, e2e.ReadNodeState(t, node))
	e2e.RequireNothingLeft(t, ns, pool4.Name, pool6.Name)

	// the rule: a pod whose default route another NIC holds (here an "overlay" eth0),
	// or a network with enabled false, gets no host veth
	overlay := e2e.NewPodNS(t)
	if out, err := overlay.Run("sh", "-c", fmt.Sprintf("ip link add eth0 type veth peer name eth0p && ip link set eth0 up && "+
		"ip link set eth0p up && ip addr add 10.250.%d.5/24 dev eth0 && ip route add default via 10.250.%d.1", x+100, x+100)); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	off := e2e.NetConf{Delegate: e2e.MacvlanOn(peer.Parent), IPv4Pools: []string{pool4.Name},
		Extra: map[string]any{"hostConnectivity": map[string]any{"enabled": false}}}.Conflist(t)
	// hostConnectivity left to its automatic rule: an underlay NIC whose pod has its default
	// route elsewhere gets no host veth. Dual-stack next to an IPv4-only eth0, it takes the
	// IPv6 default (eth0 has none) but eth0 still holds the IPv4 one and reaches the node:
	// a host veth would steal the pod's IPv4 traffic to its node from eth0.
	auto := e2e.NetConf{Delegate: e2e.MacvlanOn(peer.Parent), IPv4Pools: []string{pool4.Name}, IPv6Pools: []string{pool6.Name},
		Extra: map[string]any{"hostConnectivity": map[string]any{}}}.Conflist(t)
	for _, c := range []struct {
		name string
		conf []byte
		pod  *harness.NetNS
	}{{"overlay holds the default", auto, overlay}, {"enabled false", off, e2e.NewPodNS(t)}} {
		t.Run(c.name, func(t *testing.T) {
			rt := e2e.RuntimeFor(c.pod, ns, "nohost", "net1")
			res, err := cni.Add(e2e.Ctx(t), c.conf, rt)
			if err != nil {
				t.Fatalf("ADD: %v", err)
			}
			if r, _ := current.GetResult(res); len(r.Interfaces) != 1 {
				t.Fatalf("want only net1 in the result, got %+v", r.Interfaces)
			}
			e2e.RequireSameNode(t, "after ADD", before, e2e.ReadNodeState(t, node))
			if err := cni.Check(e2e.Ctx(t), c.conf, rt); err != nil {
				t.Fatalf("CHECK: %v", err)
			}
			if err := cni.Del(e2e.Ctx(t), c.conf, rt); err != nil {
				t.Fatalf("DEL: %v", err)
			}
		})
	}
	e2e.RequireNothingLeft(t, ns, pool4.Name, pool6.Name)
}

// hostVethOf finds the node end of the host veth in a result: the interface with no sandbox.
func hostVethOf(t *testing.T, res interface{ Print() error }) string {
	t.Helper()
	r, err := current.GetResult(res.(*current.Result))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, itf := range r.Interfaces {
		names = append(names, itf.Name+"@"+itf.Sandbox)
		if itf.Sandbox == "" {
			return itf.Name
		}
	}
	t.Fatalf("no node-side interface in the result: %v", names)
	return ""
}
