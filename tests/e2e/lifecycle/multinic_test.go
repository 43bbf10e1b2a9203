package lifecycle

import (
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/tests/e2e"
	"github.com/underpool/underpool/tests/harness"
)

// Multi-NIC pods the way users meet them: three NetworkAttachmentDefinitions named in
// k8s.v1.cni.cncf.io/networks, attached by the real multus on the kubelet stand-ins, with
// pools per interface from ipam.underpool.io/ippools and the default route where
// ipam.underpool.io/default-route-nic puts it.

// multiNIC is a lifecycle with three underpool networks: storage (net1) and backend (net2)
// on the nodes' uplink eth1, on two subnets, and replication (net3) on a second uplink,
// eth2. Each network has a gateway peer on its segment, with an off-subnet address behind
// it, and two pools: the NAD's own and the one the pods' ippools annotation names, both
// on the network's subnet, so an address says which of the two it came from.
type multiNIC struct {
	*lifecycle
	nets []multiNICNet
}

type multiNICNet struct {
	ifName, gw       string
	podPool, nadPool string
	peer             e2e.Peer
}

// multiNICNetworks is the pods' networks annotation: net1, net2, net3 by position.
const multiNICNetworks = "storage,backend,replication"

func newMultiNIC(t *testing.T, nodes int) *multiNIC {
	t.Helper()
	_, _, remote := e2e.NextSubnet()
	m := &multiNIC{lifecycle: newLifecycle(t, lifecycleOptions{nodes: nodes})}
	for i, n := range []struct{ nad, uplink string }{{"storage", "eth1"}, {"backend", "eth1"}, {"replication", "eth2"}} {
		_, _, x := e2e.NextSubnet()
		at := func(h int) string { return fmt.Sprintf("10.250.%d.%d", x, h) }
		net := multiNICNet{ifName: fmt.Sprintf("net%d", i+1), gw: at(1),
			podPool: e2e.NewPool(t, v1.IPPoolSpec{Subnet: at(0) + "/24", Gateway: at(1), IPs: []string{at(10) + "-" + at(99)}}).Name,
			nadPool: e2e.NewPool(t, v1.IPPoolSpec{Subnet: at(0) + "/24", Gateway: at(1), IPs: []string{at(100) + "-" + at(199)}}).Name}
		m.lifecycle.addNetConf(e2e.NetConf{Name: n.nad, Delegate: e2e.MacvlanOn(m.uplink(n.uplink)), IPv4Pools: []string{net.nadPool},
			// strict: a request that came in on another NIC than its reply's would be dropped
			Extra: map[string]any{"routing": map[string]any{"rpFilter": 1}}})
		net.peer = m.segments[n.uplink].NewPeer(t, at(1)+"/24", fmt.Sprintf("10.250.%d.%d", remote, i+1))
		m.nets = append(m.nets, net)
	}
	return m
}

// annotations are a pod's: the three networks, a pool per interface, and the default
// route on defaultNIC.
func (m *multiNIC) annotations(defaultNIC string) map[string]string {
	var pools []string
	for _, n := range m.nets {
		pools = append(pools, fmt.Sprintf(`{"interface":%q,"ipv4":[%q]}`, n.ifName, n.podPool))
	}
	return map[string]string{
		v1.AnnotationNetworks:        multiNICNetworks,
		v1.AnnotationIPPools:         "[" + strings.Join(pools, ",") + "]",
		v1.AnnotationDefaultRouteNIC: defaultNIC,
	}
}

func (m *multiNIC) pools() []string {
	var out []string
	for _, n := range m.nets {
		out = append(out, n.podPool, n.nadPool)
	}
	return out
}

// pod creates a bare pod (labelled app=name) for the scheduler to place.
func (m *multiNIC) pod(name string, annotations map[string]string) *corev1.Pod {
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: m.ns, Name: name, Annotations: annotations, Labels: map[string]string{"app": name}},
		Spec: corev1.PodSpec{TerminationGracePeriodSeconds: ptr.To[int64](lifecycleGrace),
			Containers: []corev1.Container{{Name: "c", Image: "pause"}}},
	}
	m.create(pod)
	return pod
}

// held is what each pod's Endpoint holds, by pod, then interface: address and pool.
func (m *multiNIC) held() map[string]map[string][2]string {
	m.t.Helper()
	out := map[string]map[string][2]string{}
	for _, ep := range e2e.Endpoints(m.t, m.ns) {
		out[ep.Name] = map[string][2]string{}
		for _, itf := range ep.Status.Interfaces {
			for _, ip := range itf.IPs {
				out[ep.Name][itf.Interface] = [2]string{ip.Address, ip.Pool}
			}
		}
	}
	return out
}

// requirePodPools checks that each of the pod's interfaces holds one address, from the
// pool the ippools annotation names for it (not the NAD's), and carries it in its sandbox.
func (m *multiNIC) requirePodPools(pod corev1.Pod, held map[string][2]string) {
	m.t.Helper()
	sb, ok := m.node(pod).kubelet.Sandbox(m.ns, pod.Name)
	if !ok {
		m.t.Fatalf("%s has no sandbox", pod.Name)
	}
	if len(held) != len(m.nets) {
		m.t.Fatalf("%s's Endpoint holds %v, want one address on each of net1..net%d", pod.Name, held, len(m.nets))
	}
	for _, n := range m.nets {
		h := held[n.ifName]
		if h[1] != n.podPool {
			m.t.Fatalf("%s %s holds %s from pool %q, want pool %s (its ippools entry; the NAD's is %s)",
				pod.Name, n.ifName, h[0], h[1], n.podPool, n.nadPool)
		}
		if got := harness.GlobalAddrs(sb.NetNS.Path(), n.ifName); len(got) != 1 || got[0] != h[0] {
			m.t.Fatalf("%s's sandbox has %v on %s, its Endpoint %s", pod.Name, got, n.ifName, h[0])
		}
	}
}

// requireRouting checks the pod's routes: the default route on defaultNIC only, each NIC's
// own table with its default via its gateway and a rule for its address, rp_filter strict.
func (m *multiNIC) requireRouting(pod *harness.NetNS, held map[string][2]string, defaultNIC string) {
	m.t.Helper()
	main := e2e.RoutesIn(m.t, pod, 0)
	rules := e2e.RulesIn(m.t, pod)
	for i, n := range m.nets {
		table := 101 + i
		if n.ifName == defaultNIC {
			e2e.RequireContains(m.t, "pod main table", main, "default via "+n.gw+" dev "+n.ifName)
		} else {
			e2e.RequireLacks(m.t, "pod main table", main, "default via "+n.gw)
		}
		e2e.RequireContains(m.t, fmt.Sprintf("table %d", table), e2e.RoutesIn(m.t, pod, table), "default via "+n.gw+" dev "+n.ifName)
		e2e.RequireContains(m.t, "pod rules", rules, fmt.Sprintf("from %s/32 lookup %d", e2e.MustPrefix(m.t, held[n.ifName][0]).Addr(), table))
	}
	for _, dev := range []string{"all", "net1", "net2", "net3"} {
		if v, err := pod.Run("sysctl", "-n", "net.ipv4.conf."+dev+".rp_filter"); err != nil || strings.TrimSpace(v) != "1" {
			m.t.Fatalf("rp_filter on %s = %q (%v), want 1 (strict, as the networks set it)", dev, v, err)
		}
	}
}

// requireRepliesByTheirNIC pings each NIC's address from the off-subnet address behind its
// gateway peer: the replies must come back (strict rp_filter drops a request whose reply
// would leave elsewhere, and the other gateways do not forward), and the NIC's transmit
// counter, not another's, must have counted them.
func (m *multiNIC) requireRepliesByTheirNIC(pod *harness.NetNS, held map[string][2]string) {
	m.t.Helper()
	const count = 10
	for _, n := range m.nets {
		before := map[string]uint64{}
		for _, o := range m.nets {
			before[o.ifName] = e2e.TxPackets(m.t, pod, o.ifName)
		}
		addr := e2e.MustPrefix(m.t, held[n.ifName][0]).Addr().String()
		if err := n.peer.PingFromRemote(addr, count); err != nil {
			m.t.Fatalf("a request routed in on %s got no reply: %v", n.ifName, err)
		}
		for _, o := range m.nets {
			sent := e2e.TxPackets(m.t, pod, o.ifName) - before[o.ifName]
			if o.ifName == n.ifName && sent < count {
				m.t.Fatalf("%s sent %d packets for %d requests that came in on it", o.ifName, sent, count)
			}
			if o.ifName != n.ifName && sent >= count {
				m.t.Fatalf("%s sent %d packets while %d requests came in on %s: replies left by the wrong NIC", o.ifName, sent, count, n.ifName)
			}
		}
	}
}

// requireHostVethOn checks host connectivity on the pod's node: the NIC holding the
// default route has the one host veth, and through it the pod reaches its node's own
// address, which none of its macvlans can.
func (m *multiNIC) requireHostVethOn(pod corev1.Pod, sandbox *harness.NetNS, defaultNIC string) {
	m.t.Helper()
	links, err := e2e.LinksIn(sandbox)
	if err != nil {
		m.t.Fatal(err)
	}
	var veths []string
	for _, l := range links {
		if strings.HasPrefix(l, "host-") {
			veths = append(veths, l)
		}
	}
	if len(veths) != 1 || veths[0] != "host-"+defaultNIC {
		m.t.Fatalf("%s has host veths %v, want host-%s only (the default route's NIC)", pod.Name, veths, defaultNIC)
	}
	node := m.node(pod)
	if err := harness.Ping(sandbox, node.addrs[0], 3); err != nil {
		m.t.Fatalf("%s cannot reach its node %s at %s through host-%s: %v", pod.Name, node.name, node.addrs[0], defaultNIC, err)
	}
}

// A pod with three networks through multus: each interface gets its address from the pool
// the ippools annotation names for it; default-route-nic puts the default route on net2
// (neither the first attached nor the last); each NIC has its own table and rule, and with
// strict rp_filter a request arriving on any NIC is answered through that NIC (counters);
// net2 alone gets a host veth, through which the pod reaches its node. Deleting the pod
// leaves nothing: no Endpoint, no address in any pool, nothing on the node's netns.
func TestPodWithThreeNetworksGetsEachPoolAndAnswersByEachNIC(t *testing.T) {
	m := newMultiNIC(t, 1)
	pod := m.pod("three", m.annotations("net2"))
	running := onlyPod(t, m.waitReady("three", 1))
	held := m.held()["three"]
	m.requirePodPools(running, held)
	sb, _ := m.node(running).kubelet.Sandbox(m.ns, "three")
	m.requireRouting(sb.NetNS, held, "net2")
	m.requireRepliesByTheirNIC(sb.NetNS, held)
	m.requireHostVethOn(running, sb.NetNS, "net2")
	m.requireInvariants(m.pools()...)

	m.deleteAll(pod)
	m.requireNothingLeft(m.pools()...)
}

// A default-route-nic naming an interface the pod will not have fails its sandbox's ADD,
// through multus, with an event naming the annotation, the bad value and the interfaces the
// pod has; nothing is allocated from any of its pools while the kubelet retries, and once
// the pod is deleted nothing is left.
func TestADefaultRouteNICThePodLacksFailsTheSandboxNamingIt(t *testing.T) {
	m := newMultiNIC(t, 1)
	pod := m.pod("typo", m.annotations("net7"))
	m.eventually("two sandboxes of typo refused naming default-route-nic", 2*time.Minute, func() (bool, string) {
		n, last := m.sandboxFailures("typo", v1.AnnotationDefaultRouteNIC, `"net7"`, "eth0, net1, net2, net3")
		return n >= 2, fmt.Sprintf("%d such events; last: %s", n, last)
	})
	e2e.HoldFor(3*time.Second, func() {
		for _, p := range m.pools() {
			if got := e2e.FreshState(t, p).AllocatedIPCount; got != 0 {
				t.Fatalf("pool %s holds %d addresses for a pod whose every ADD is refused", p, got)
			}
		}
	})
	if pods := m.pods("typo"); len(pods) != 1 || harness.PodReady(&pods[0]) {
		t.Fatalf("the refused pod must exist and not be Ready: %d pods", len(pods))
	}
	m.requireInvariants(m.pools()...)
	m.deleteAll(pod)
	m.requireNothingLeft(m.pools()...)
}

// A StatefulSet whose pods have the three networks, on two nodes: a rolling restart (each
// pod: DEL, the object goes, the controller makes it again, ADD through multus) keeps every
// pod's address on every NIC, from the pools the annotation names, with the default route
// and host veth on net2 again; deleting the set leaves nothing.
func TestStatefulSetWithThreeNICsKeepsEveryAddressAcrossARollingRestart(t *testing.T) {
	m := newMultiNIC(t, 2)
	sts := e2e.StatefulSetOf(m.ns, "multi", 3, m.annotations("net2"))
	sts.Spec.Template.Spec.TerminationGracePeriodSeconds = ptr.To[int64](lifecycleGrace)
	m.create(sts)
	pods := m.waitReady("multi", 3)
	before := m.held()
	for name, pod := range pods {
		m.requirePodPools(pod, before[name])
	}
	m.requireInvariants(m.pools()...)

	m.rollingRestart(sts)
	m.eventually("every pod replaced by the rolling restart", 3*time.Minute, func() (bool, string) {
		for name, p := range m.waitReady("multi", 3) {
			if p.UID == pods[name].UID {
				return false, name + " not replaced yet"
			}
		}
		return true, ""
	})
	after := m.held()
	for name, pod := range m.waitReady("multi", 3) {
		for _, n := range m.nets {
			if after[name][n.ifName] != before[name][n.ifName] {
				t.Errorf("%s %s held %v before the rolling restart, %v after", name, n.ifName, before[name][n.ifName], after[name][n.ifName])
			}
		}
		m.requirePodPools(pod, after[name])
		sb, _ := m.node(pod).kubelet.Sandbox(m.ns, name)
		m.requireRouting(sb.NetNS, after[name], "net2")
		m.requireHostVethOn(pod, sb.NetNS, "net2")
	}
	m.requireInvariants(m.pools()...)

	m.deleteAll(sts)
	m.requireNothingLeft(m.pools()...)
}
