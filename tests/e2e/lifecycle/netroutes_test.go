package lifecycle

import (
	"fmt"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/netplan"
	"github.com/underpool/underpool/tests/e2e"
)

// An UnderlayNetwork's routes reach the pod through the NAD it generates, multus and the
// kubelet stand-in: in the pod's main table and in net1's policy table, under the pool's
// route to the same destination (the pool's wins); turned off, policy routing leaves
// them in the main table alone. The API server refuses a route that cannot be, naming
// the field; a route of a family the pod has no address of fails its ADD with the fix.
// Invariants after every phase, and DEL leaves nothing.
func TestAnUnderlayNetworksRoutesReachThePodAndGoWithIt(t *testing.T) {
	v4, _, _ := e2e.NextSubnet()
	a := strings.TrimSuffix(v4, "0/24")
	pool := e2e.NewPool(t, v1.IPPoolSpec{Subnet: v4, Gateway: a + "1",
		Routes: []v1.Route{{Dst: "172.16.0.0/12", Gw: a + "254"}}}).Name
	lc := newLifecycle(t, lifecycleOptions{})
	requireRoutesRefused(t, lc.ns)

	net := e2e.NewUnderlayNetwork(t, v1.UnderlayNetworkSpec{
		Namespaces: []string{lc.ns}, Macvlan: &v1.MacvlanNetwork{Master: nodeUplink},
		IPAM:   v1.NetworkIPAM{IPv4Pools: []string{pool}},
		Routes: []v1.NetworkRoute{{Dst: "192.168.0.0/16", Gw: a + "253"}, {Dst: "172.16.0.0/12", Gw: a + "252"}}})
	e2e.WaitNetworkReady(t, net.Name, metav1.ConditionTrue, v1.NetworkSynced)
	dep := lc.deployment("routed", 1, map[string]string{"k8s.v1.cni.cncf.io/networks": net.Name})
	lc.create(dep)
	first := onlyPod(t, lc.waitReady("routed", 1))
	want := []string{"192.168.0.0/16 via " + a + "253 dev net1", "172.16.0.0/12 via " + a + "254 dev net1"}
	table := netplan.TableFor("net1", 0)
	lc.requirePodRoutes(first.Name, 0, want)
	lc.requirePodRoutes(first.Name, table, want)
	lc.requireInvariants(pool)

	// policy routing off: the routes stay in the main table, no table of net1's is left
	lc.updateNetwork(net.Name, func(s *v1.UnderlayNetworkSpec) { s.Routing = &v1.NetworkRouting{PolicyRouting: ptr.To(false)} })
	e2e.WaitNetworkReady(t, net.Name, metav1.ConditionTrue, v1.NetworkSynced)
	lc.rollingRestart(dep)
	second := lc.podOtherThan("routed", first.Name)
	lc.requirePodRoutes(second, 0, want)
	if got := lc.podRoutes(second, table); len(got) != 0 {
		t.Fatalf("policy routing off, yet table %d of %s holds %v", table, second, got)
	}
	lc.requireInvariants(pool)

	// an IPv6 route for a pod with only an IPv4 address: ADD fails naming the route and the fix
	lc.updateNetwork(net.Name, func(s *v1.UnderlayNetworkSpec) {
		s.Routes = append(s.Routes, v1.NetworkRoute{Dst: "fd00:1::/48"})
	})
	e2e.WaitNetworkReady(t, net.Name, metav1.ConditionTrue, v1.NetworkSynced)
	lonely := lc.deployment("v6-route", 1, map[string]string{"k8s.v1.cni.cncf.io/networks": net.Name})
	lc.create(lonely)
	lc.eventually("a sandbox of v6-route refused naming the IPv6 route", 2*time.Minute, func() (bool, string) {
		return lc.sandboxFailedWith("v6-route", "routes[2] fd00:1::/48", "no IPv6 address", "give the network an IPv6 pool")
	})
	lc.requireInvariants(pool)

	lc.deleteAll(dep, lonely)
	lc.requireNothingLeft(pool)
}

// requireRoutesRefused: the API server refuses an UnderlayNetwork route that cannot be,
// naming the field, before any webhook or controller sees it.
func requireRoutesRefused(t *testing.T, ns string) {
	t.Helper()
	for _, c := range []struct {
		routes []v1.NetworkRoute
		want   string
	}{
		{[]v1.NetworkRoute{{Dst: "192.168.0.0"}}, "spec.routes[0].dst: Invalid value"},
		{[]v1.NetworkRoute{{Dst: "192.168.0.0/16", Gw: "router"}}, "spec.routes[0].gw: Invalid value"},
		{[]v1.NetworkRoute{{Dst: "fd00::/8", Gw: "10.0.0.1"}}, "gw and dst must be of one family"},
		{[]v1.NetworkRoute{{Dst: "10.0.0.0/8"}, {Dst: "10.0.0.0/8", Gw: "10.0.0.1"}}, "spec.routes[1]: Duplicate value"},
	} {
		bad := &v1.UnderlayNetwork{ObjectMeta: metav1.ObjectMeta{Name: "bad-routes"}, Spec: v1.UnderlayNetworkSpec{
			Namespaces: []string{ns}, Macvlan: &v1.MacvlanNetwork{Master: nodeUplink}, Routes: c.routes}}
		err := e2e.Suite.Client.Create(e2e.Ctx(t), bad)
		if err == nil {
			_ = e2e.Suite.Client.Delete(e2e.Ctx(t), bad)
		}
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Fatalf("routes %+v: error %v, want one saying %q", c.routes, err, c.want)
		}
	}
}

// podRoutes lists the pod's current sandbox's routes of one table (0: main).
func (lc *lifecycle) podRoutes(pod string, table int) []string {
	lc.t.Helper()
	for _, n := range lc.nodes {
		if sb, ok := n.kubelet.Sandbox(lc.ns, pod); ok {
			return e2e.RoutesIn(lc.t, sb.NetNS, table)
		}
	}
	lc.t.Fatalf("no sandbox of %s on any node", pod)
	return nil
}

// requirePodRoutes fails unless the pod's table (0: main) holds every route of want.
func (lc *lifecycle) requirePodRoutes(pod string, table int, want []string) {
	lc.t.Helper()
	e2e.RequireContains(lc.t, fmt.Sprintf("table %d of %s", table, pod), lc.podRoutes(pod, table), want...)
}

// podOtherThan waits for the one ready pod of app that is not old, alone, and names it.
func (lc *lifecycle) podOtherThan(app, old string) string {
	lc.t.Helper()
	var name string
	lc.eventually("a pod of "+app+" other than "+old, 2*time.Minute, func() (bool, string) {
		pods := lc.readyPods(app)
		if len(pods) != 1 || pods[0].Name == old || len(lc.pods(app)) != 1 {
			return false, fmt.Sprintf("%d ready, %d pods", len(pods), len(lc.pods(app)))
		}
		name = pods[0].Name
		return true, ""
	})
	return name
}
