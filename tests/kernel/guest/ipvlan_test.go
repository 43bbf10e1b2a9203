package guest

import (
	"fmt"
	"strings"
	"testing"

	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/tests/e2e"
	"github.com/underpool/underpool/tests/harness"
)

// ipvlan in each mode on a real kernel, the way Spiderpool users run it: the
// containernetworking ipvlan plugin with underpool-ipam as its IPAM, ipamd writing the
// allocations to the API. Two pods on one master get addresses from the pool and the default
// route via its gateway; they reach each other and the segment's gateway; CHECK passes; DEL
// leaves no link in the pod and nothing held.
func TestIpvlanWithUnderpoolIpamTwoPodsReachEachOtherAndTheGateway(t *testing.T) {
	for _, mode := range []string{"l2", "l3", "l3s"} {
		t.Run(mode, func(t *testing.T) {
			v4net, _, x := e2e.NextSubnet()
			seg := newSegment(t, x)
			pool := newPool(t, v1.IPPoolSpec{Subnet: v4net, Gateway: seg.gatewayAddr})
			conf := e2e.MustJSON(t, map[string]any{"cniVersion": "1.1.0", "name": "vm-ipvlan-" + mode, "plugins": []any{
				map[string]any{"type": "ipvlan", "master": seg.master, "mode": mode, "ipam": map[string]any{
					"type": "underpool-ipam", "ipv4Pools": []string{pool.Name}, "logFile": logDir + "/ipam-plugin.log"}},
			}})
			p := twoIpvlanPods(t, seg, conf, mode)
			for _, pod := range p.pods {
				e2e.RequireContains(t, "pod main table", e2e.RoutesIn(t, pod.ns, 0), "default via "+seg.gatewayAddr+" dev net1")
			}
			p.requireReach(t, seg, false)
			p.checkDelAndNothingLeft(t, seg, pool.Name)
		})
	}
}

// The same through the meta-plugin with ipvlan as its delegate: then the plugin also gives
// each pod its policy table, rule and host veth, so the pods reach the node too (an ipvlan
// never reaches its own master), and DEL takes the host veth and its routes off the node.
func TestIpvlanAsDelegateTwoPodsReachEachOtherTheGatewayAndTheNode(t *testing.T) {
	for _, mode := range []string{"l2", "l3", "l3s"} {
		t.Run(mode, func(t *testing.T) {
			v4net, _, x := e2e.NextSubnet()
			seg := newSegment(t, x)
			pool := newPool(t, v1.IPPoolSpec{Subnet: v4net, Gateway: seg.gatewayAddr})
			conf := netConf{Delegate: map[string]any{"type": "ipvlan", "master": seg.master, "mode": mode},
				IPv4Pools: []string{pool.Name}}.conflist(t)
			p := twoIpvlanPods(t, seg, conf, mode)
			for _, pod := range p.pods {
				requireIpvlanPlan(t, pod.ns, pod.ip, seg)
				requireHostRoute(t, seg.node, pod.ip)
			}
			p.requireReach(t, seg, true)
			p.checkDelAndNothingLeft(t, seg, pool.Name)
			e2e.RequireLacks(t, "node routes after DEL", e2e.RoutesIn(t, seg.node, 0), p.pods[0].ip+"/32", p.pods[1].ip+"/32")
		})
	}
}

type ipvlanPod struct {
	ns *harness.NetNS
	rt harness.Runtime
	ip string
}

// ipvlanPods are two pods attached to one master by conf.
type ipvlanPods struct {
	cni        *harness.CNI
	conf       []byte
	mode       string
	ns         string
	pods       []ipvlanPod
	nodeBefore []string // the node's links before ADD
}

// twoIpvlanPods attaches two pods through conf and checks each got an ipvlan link of the mode
// with its address, and what the API holds.
func twoIpvlanPods(t *testing.T, seg segment, conf []byte, mode string) *ipvlanPods {
	t.Helper()
	p := &ipvlanPods{cni: nodeCNI(t, seg.node), conf: conf, mode: mode, ns: newNamespace(t), nodeBefore: linksIn(t, seg.node)}
	var live []harness.Runtime
	for _, name := range []string{"a", "b"} {
		pod := ipvlanPod{ns: newNetNS(t, "pod")}
		pod.rt = runtimeFor(pod.ns, p.ns, name, "net1")
		res, err := p.cni.Add(ctx(t), conf, pod.rt)
		if err != nil {
			t.Fatalf("ADD %s: %v", name, err)
		}
		pod.ip = e2e.FirstIP(t, res, true)
		if kind, m := linkKind(t, pod.ns, "net1"); kind != "ipvlan" || m != mode {
			t.Fatalf("net1 is a %s link in mode %q, want ipvlan %s", kind, m, mode)
		}
		if ok, err := harness.HasAddr(pod.ns.Path(), "net1", e2e.ParseIP(t, pod.ip)); err != nil || !ok {
			t.Fatalf("net1 lacks %s (%v)", pod.ip, err)
		}
		p.pods = append(p.pods, pod)
		live = append(live, pod.rt)
	}
	requireInvariants(t, live, poolsOf(t, p.ns)...)
	return p
}

// poolsOf names the pools the namespace's Endpoints hold addresses in.
func poolsOf(t *testing.T, ns string) []string {
	t.Helper()
	var eps v1.EndpointList
	if err := suite.client.List(ctx(t), &eps, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	var pools []string
	for _, ep := range eps.Items {
		for _, itf := range ep.Status.Interfaces {
			for _, ip := range itf.IPs {
				if !seen[ip.Pool] {
					seen[ip.Pool] = true
					pools = append(pools, ip.Pool)
				}
			}
		}
	}
	return pools
}

// requireReach pings between the pods and to the gateway, and to the node when the plugin
// made the host veth.
// In l3 and l3s modes the gateway routes the pods' addresses via the node (routePodsToNode).
func (p *ipvlanPods) requireReach(t *testing.T, seg segment, node bool) {
	t.Helper()
	a, b := p.pods[0], p.pods[1]
	if p.mode != "l2" {
		seg.routePodsToNode(t, a.ip, b.ip)
	}
	hops := []struct {
		from *harness.NetNS
		to   string
		what string
	}{{a.ns, b.ip, "pod a to pod b"}, {b.ns, a.ip, "pod b to pod a"},
		{a.ns, seg.gatewayAddr, "pod a to the gateway"}, {b.ns, seg.gatewayAddr, "pod b to the gateway"}}
	if node {
		hops = append(hops, struct {
			from *harness.NetNS
			to   string
			what string
		}{a.ns, seg.nodeAddr, "pod a to the node"})
	}
	for _, hop := range hops {
		if err := harness.Ping(hop.from, hop.to, 3); err != nil {
			t.Errorf("%s (%s): %v", hop.what, hop.to, err)
		}
	}
}

// checkDelAndNothingLeft runs CHECK on both pods, then DEL, and checks that the pods have
// only their loopback and no rules, the node has the links it had before, and the API holds
// nothing for them.
func (p *ipvlanPods) checkDelAndNothingLeft(t *testing.T, seg segment, pool string) {
	t.Helper()
	for _, pod := range p.pods {
		if err := p.cni.Check(ctx(t), p.conf, pod.rt); err != nil {
			t.Errorf("CHECK %s: %v", pod.rt.PodName, err)
		}
	}
	for _, pod := range p.pods {
		if err := p.cni.Del(ctx(t), p.conf, pod.rt); err != nil {
			t.Fatalf("DEL %s: %v", pod.rt.PodName, err)
		}
	}
	for _, pod := range p.pods {
		if links := linksIn(t, pod.ns); strings.Join(links, ",") != "lo" {
			t.Errorf("DEL left links in pod %s: %v", pod.rt.PodName, links)
		}
		if rules := e2e.RulesIn(t, pod.ns); len(rules) > 0 {
			t.Errorf("DEL left rules in pod %s: %v", pod.rt.PodName, rules)
		}
	}
	if after := linksIn(t, seg.node); strings.Join(after, ",") != strings.Join(p.nodeBefore, ",") {
		t.Errorf("the node's links were %v before ADD and are %v after DEL", p.nodeBefore, after)
	}
	e2e.RequireNothingLeft(t, p.ns, pool)
}

// requireIpvlanPlan checks what the meta-plugin's plan puts into the pod: the default route
// via the gateway in the main table; net1's own table (101) with the subnet and the default
// route, chosen by a rule from the address; the host veth's route to the node.
func requireIpvlanPlan(t *testing.T, pod *harness.NetNS, ip string, seg segment) {
	t.Helper()
	subnet := ip[:strings.LastIndex(ip, ".")] + ".0/24"
	e2e.RequireContains(t, "pod main table", e2e.RoutesIn(t, pod, 0),
		"default via "+seg.gatewayAddr+" dev net1", seg.nodeAddr+"/32 dev host-net1")
	e2e.RequireContains(t, "net1's table 101", e2e.RoutesIn(t, pod, 101),
		"default via "+seg.gatewayAddr+" dev net1", subnet+" dev net1")
	e2e.RequireContains(t, "pod rules", e2e.RulesIn(t, pod), fmt.Sprintf("from %s/32 lookup 101", ip))
}

// requireHostRoute checks the node's half of the host veth: a /32 to the pod through it.
func requireHostRoute(t *testing.T, node *harness.NetNS, ip string) {
	t.Helper()
	for _, r := range e2e.RoutesIn(t, node, 0) {
		if strings.HasPrefix(r, ip+"/32 dev up") {
			return
		}
	}
	t.Fatalf("the node has no route to %s through a host veth:\n  %s", ip, strings.Join(e2e.RoutesIn(t, node, 0), "\n  "))
}

// Dual stack on ipvlan l2 with underpool-ipam: each pod gets an address from an IPv4 and an
// IPv6 pool, both held by its Endpoint; the pods reach each other and the gateway over IPv6
// too (neighbour discovery through the shared master's MAC); DEL leaves nothing in either pool.
func TestIpvlanDualStackWithUnderpoolIpam(t *testing.T) {
	v4net, v6net, x := e2e.NextSubnet()
	seg := newSegment(t, x)
	gw6 := fmt.Sprintf("fd00:250:0:%x::1", x)
	if err := harness.AddAddr(seg.gateway, seg.far, gw6+"/64"); err != nil {
		t.Fatal(err)
	}
	pool4 := newPool(t, v1.IPPoolSpec{Subnet: v4net, Gateway: seg.gatewayAddr})
	pool6 := newPool(t, v1.IPPoolSpec{Subnet: v6net, Gateway: gw6})
	conf := e2e.MustJSON(t, map[string]any{"cniVersion": "1.1.0", "name": "vm-ipvlan-ds", "plugins": []any{
		map[string]any{"type": "ipvlan", "master": seg.master, "mode": "l2", "ipam": map[string]any{
			"type": "underpool-ipam", "ipv4Pools": []string{pool4.Name}, "ipv6Pools": []string{pool6.Name},
			"logFile": logDir + "/ipam-plugin.log"}},
	}})
	p := twoIpvlanPods(t, seg, conf, "l2")
	var v6 []string
	for _, pod := range p.pods {
		addrs := harness.GlobalAddrs(pod.ns.Path(), "net1")
		for _, a := range addrs {
			if strings.Contains(a, ":") {
				v6 = append(v6, a[:strings.Index(a, "/")])
			}
		}
	}
	if len(v6) != 2 {
		t.Fatalf("want one IPv6 address per pod on net1, got %v", v6)
	}
	p.requireReach(t, seg, false)
	for _, hop := range []struct {
		from *harness.NetNS
		to   string
	}{{p.pods[0].ns, v6[1]}, {p.pods[1].ns, v6[0]}, {p.pods[0].ns, gw6}} {
		if err := harness.Ping(hop.from, hop.to, 5); err != nil {
			t.Errorf("IPv6 to %s: %v", hop.to, err)
		}
	}
	p.checkDelAndNothingLeft(t, seg, pool4.Name)
	e2e.RequireNothingLeft(t, p.ns, pool6.Name)
}
