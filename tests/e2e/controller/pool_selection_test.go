package controller

import (
	"fmt"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/rpc"
	"github.com/underpool/underpool/tests/e2e"
	"github.com/underpool/underpool/tests/harness"
)

// Pool choice follows the documented order: pod annotation > namespace default > the
// network's pools > cluster default pools.
func TestPoolSelectionOrder(t *testing.T) {
	mk := func() string {
		v4, _, _ := e2e.NextSubnet()
		return e2e.NewPool(t, v1.IPPoolSpec{Subnet: v4}).Name
	}
	annotated, nsDefault, network := mk(), mk(), mk()
	v4, _, _ := e2e.NextSubnet()
	clusterDefault := e2e.NewPool(t, v1.IPPoolSpec{Subnet: v4, Default: true}).Name
	// created with its annotation: ipamd reads namespaces from its informer, falling back to
	// the API for one it has not seen yet, so the annotation is never missed
	plainNS, defaultNS := e2e.NewNamespace(t), e2e.NewNamespaceWith(t, map[string]string{v1.AnnotationNSDefaultIPv4: `["` + nsDefault + `"]`}, nil)

	for _, c := range []struct {
		pod, ns     string
		annotations map[string]string
		network     []string // the NAD's pools
		want        string
	}{
		{"annotated", defaultNS, map[string]string{v1.AnnotationIPPool: `{"ipv4":["` + annotated + `"]}`}, []string{network}, annotated},
		{"ns-default", defaultNS, nil, []string{network}, nsDefault},
		{"network", plainNS, nil, []string{network}, network},
		{"cluster-default", plainNS, nil, nil, clusterDefault},
	} {
		t.Run(c.pod, func(t *testing.T) {
			p := e2e.NewPod(t, c.ns, c.pod, c.annotations, nil, nil)
			if got := e2e.AllocPool(t, p, "net1", c.network...); got != c.want {
				t.Errorf("got pool %s, want %s", got, c.want)
			}
		})
	}
	e2e.RequireInvariants(t, nil, annotated, nsDefault, network, clusterDefault)
	e2e.ReleaseAll(t, plainNS, defaultNS)
}

// Within a list, pools whose affinity does not match or that are exhausted are skipped;
// when nothing fits, the error lists each pool and why.
func TestAlternatesAndAffinity(t *testing.T) {
	// node-a carries zone=a (see TestMain)
	ns := e2e.NewNamespace(t)
	base := func() string { v4, _, _ := e2e.NextSubnet(); return strings.TrimSuffix(v4, "0/24") }
	b1 := base()
	full := e2e.NewPool(t, v1.IPPoolSpec{Subnet: b1 + "0/24", IPs: []string{b1 + "10"}}).Name
	otherZone := e2e.NewPool(t, v1.IPPoolSpec{Subnet: base() + "0/24", NodeAffinity: &metav1.LabelSelector{MatchLabels: map[string]string{"zone": "b"}}}).Name
	webOnly := e2e.NewPool(t, v1.IPPoolSpec{Subnet: base() + "0/24", PodAffinity: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}}).Name
	otherNet := e2e.NewPool(t, v1.IPPoolSpec{Subnet: base() + "0/24", MultusNames: []string{"storage"}}).Name
	good := e2e.NewPool(t, v1.IPPoolSpec{Subnet: base() + "0/24", NodeAffinity: &metav1.LabelSelector{MatchLabels: map[string]string{"zone": "a"}}}).Name
	list := []string{full, otherZone, webOnly, otherNet, good}

	first := e2e.NewPod(t, ns, "first", nil, map[string]string{"app": "db"}, nil)
	if got := e2e.AllocPool(t, first, "net1", list...); got != full {
		t.Fatalf("first pod: got %s, want the first pool %s", got, full)
	}
	second := e2e.NewPod(t, ns, "second", nil, map[string]string{"app": "db"}, nil)
	if got := e2e.AllocPool(t, second, "net1", list...); got != good {
		t.Fatalf("second pod: got %s, want the alternate %s", got, good)
	}
	_, err := e2e.AllocateFor(t, e2e.NewPod(t, ns, "third", nil, map[string]string{"app": "db"}, nil), "net1", list[:4]...)
	for _, c := range []struct{ reason, want string }{
		{"exhausted", full + ": exhausted"}, {"nodeAffinity", otherZone + ": nodeAffinity"},
		{"podAffinity", webOnly + ": podAffinity"}, {"multusNames", otherNet + ": multusNames"},
	} {
		t.Run(c.reason, func(t *testing.T) {
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %v does not say %q", err, c.want)
			}
		})
	}
	e2e.RequireInvariants(t, nil, list...)
	e2e.ReleaseAll(t, ns)
}

// Addresses of a ReservedIP are never handed out, whatever the pool says.
func TestReservedIPsAreNeverHandedOut(t *testing.T) {
	v4, _, _ := e2e.NextSubnet()
	b := strings.TrimSuffix(v4, "0/24")
	pool := e2e.NewPool(t, v1.IPPoolSpec{Subnet: v4, IPs: []string{b + "10-" + b + "13"}})
	e2e.NewReservedIP(t, b+"10-"+b+"11", b+"13")
	waitReservedSeen(t, pool.Name, b+"12")
	ns := e2e.NewNamespace(t)
	got, err := e2e.AllocateFor(t, e2e.NewPod(t, ns, "r1", nil, nil, nil), "net1", pool.Name)
	if err != nil || got.IPs[0].Address != b+"12/24" {
		t.Fatalf("want the only unreserved address %s12, got %+v %v", b, got, err)
	}
	_, err = e2e.AllocateFor(t, e2e.NewPod(t, ns, "r2", nil, nil, nil), "net1", pool.Name)
	if err == nil || !strings.Contains(err.Error(), "exhausted") {
		t.Fatalf("reserved addresses were handed out: %v", err)
	}
	e2e.RequireInvariants(t, nil, pool.Name)
	e2e.ReleaseAll(t, ns)
}

// waitReservedSeen lets ipamd's informer learn the ReservedIP: it allocates and frees a
// probe until the only unreserved address comes out.
func waitReservedSeen(t *testing.T, pool, free string) {
	t.Helper()
	ns := e2e.NewNamespace(t)
	for i := 0; i < 100; i++ {
		resp, err := e2e.Suite.Ipamd.Client.Allocate(e2e.Ctx(t), &rpc.AllocateRequest{ContainerID: fmt.Sprintf("probe-%d", i), IfName: "net1",
			Pod: rpc.Pod{Namespace: ns, Name: "probe"}, IPv4Pools: []string{pool}})
		if err != nil {
			t.Fatal(err)
		}
		_ = e2e.Suite.Ipamd.Client.Release(e2e.Ctx(t), &rpc.ReleaseRequest{ContainerID: fmt.Sprintf("probe-%d", i), Pod: rpc.Pod{Namespace: ns, Name: "probe"}})
		if strings.HasPrefix(resp.IPs[0].Address, free+"/") {
			return
		}
	}
	t.Fatal("ipamd never saw the ReservedIP")
}

// A requested address (multus "ips") is given when it lies in an eligible pool and is
// free; otherwise the error says which.
func TestRequestedIPs(t *testing.T) {
	v4, _, _ := e2e.NextSubnet()
	b := strings.TrimSuffix(v4, "0/24")
	pool := e2e.NewPool(t, v1.IPPoolSpec{Subnet: v4})
	ns := e2e.NewNamespace(t)
	conf := e2e.NetConf{Delegate: e2e.MacvlanOn(e2e.NewParent(t)), IPv4Pools: []string{pool.Name}}.Conflist(t)
	rt := e2e.RuntimeFor(e2e.NewPodNS(t), ns, "fixed", "net1")
	rt.CapabilityArgs = map[string]any{"ips": []string{b + "77/24"}, "mac": "02:fa:00:00:00:77"}
	res, err := e2e.Suite.CNI.Add(e2e.Ctx(t), conf, rt)
	if err != nil {
		t.Fatalf("ADD with ips: %v", err)
	}
	if v4s, _ := e2e.IPsOf(t, res); len(v4s) != 1 || v4s[0].String() != b+"77" {
		t.Fatalf("got %v, want %s77", v4s, b)
	}
	if mac := e2e.MACOf(t, rt.NetNS, "net1"); mac != "02:fa:00:00:00:77" {
		t.Fatalf("net1 MAC = %s, want the requested 02:fa:00:00:00:77", mac)
	}
	for _, c := range []struct{ pod, ip, want string }{
		{"same", b + "77", "already allocated"},       // a second request for a held address
		{"outside", "10.250.250.250", "outside pool"}, // a request outside the pools
	} {
		t.Run(c.want, func(t *testing.T) {
			refused := e2e.RuntimeFor(e2e.NewPodNS(t), ns, c.pod, "net1")
			refused.CapabilityArgs = map[string]any{"ips": []string{c.ip}}
			if _, err := e2e.Suite.CNI.Add(e2e.Ctx(t), conf, refused); err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("requesting %s: want an error saying %q, got %v", c.ip, c.want, err)
			}
		})
	}
	e2e.RequireInvariants(t, e2e.AttachmentsOf(rt), pool.Name)
	if err := e2e.Suite.CNI.Del(e2e.Ctx(t), conf, rt); err != nil {
		t.Fatal(err)
	}
	e2e.RequireNothingLeft(t, ns, pool.Name)
}

// A StatefulSet pod keeps its address when it is deleted and recreated (new UID).
func TestStatefulSetPodKeepsItsAddress(t *testing.T) {
	v4, _, _ := e2e.NextSubnet()
	pool := e2e.NewPool(t, v1.IPPoolSpec{Subnet: v4})
	ns := e2e.NewNamespace(t)
	sts := e2e.StatefulSetOf(ns, "db", 2, nil)
	if err := e2e.Suite.Client.Create(e2e.Ctx(t), sts); err != nil {
		t.Fatal(err)
	}
	// The real StatefulSet controller makes db-0, and makes it again (new UID) once deleted;
	// it stays Pending (no node has room), which is all ipamd needs.
	first := waitStatefulSetPod(t, ns, "db-0", "")
	a1, err := e2e.AllocateFor(t, first, "net1", pool.Name)
	if err != nil {
		t.Fatal(err)
	}
	if err := e2e.Suite.Client.Delete(e2e.Ctx(t), first, client.GracePeriodSeconds(0)); err != nil {
		t.Fatal(err)
	}
	second := waitStatefulSetPod(t, ns, "db-0", first.UID)
	// an unrelated pod in between must not get db-0's address
	if other, err := e2e.AllocateFor(t, e2e.NewPod(t, ns, "other", nil, nil, nil), "net1", pool.Name); err != nil || other.IPs[0].Address == a1.IPs[0].Address {
		t.Fatalf("db-0's address went to another pod: %+v %v", other, err)
	}
	a2, err := e2e.AllocateFor(t, second, "net1", pool.Name)
	if err != nil || a2.IPs[0].Address != a1.IPs[0].Address {
		t.Fatalf("successor got %+v (%v), want %s", a2, err, a1.IPs[0].Address)
	}
	if p := e2e.SettledState(t, pool.Name); p.AllocatedIPCount != 2 {
		t.Fatalf("pool holds %d, want 2 (db-0 once, other)", p.AllocatedIPCount)
	}
	e2e.RequireInvariants(t, nil, pool.Name)
	// a DEL keeps db-0's address while the set wants ordinal 0; once the set is gone, DEL frees it
	if err := e2e.Suite.Client.Delete(e2e.Ctx(t), sts); err != nil {
		t.Fatal(err)
	}
	e2e.WaitGone(t, "StatefulSet db gone", sts)
	e2e.ReleaseAll(t, ns)
}

// waitStatefulSetPod waits for the StatefulSet controller to have created pod name with a
// UID other than notUID.
func waitStatefulSetPod(t *testing.T, ns, name string, notUID types.UID) *corev1.Pod {
	t.Helper()
	pod := &corev1.Pod{}
	e2e.WaitFor(t, "StatefulSet pod "+name, func() bool {
		return e2e.Suite.Client.Get(e2e.Ctx(t), client.ObjectKey{Namespace: ns, Name: name}, pod) == nil && pod.UID != notUID
	})
	return pod
}

// A pod with two networks gets one allocation per interface from each interface's pools;
// DEL of one interface releases only that one.
func TestMultiNICPerInterfacePools(t *testing.T) {
	v4a, _, _ := e2e.NextSubnet()
	v4b, _, _ := e2e.NextSubnet()
	poolA, poolB := e2e.NewPool(t, v1.IPPoolSpec{Subnet: v4a}).Name, e2e.NewPool(t, v1.IPPoolSpec{Subnet: v4b}).Name
	ns := e2e.NewNamespace(t)
	pod := e2e.NewPod(t, ns, "multi", map[string]string{v1.AnnotationIPPools: `[{"interface":"net1","ipv4":["` + poolA + `"]},{"interface":"net2","ipv4":["` + poolB + `"]}]`}, nil, nil)
	if got := e2e.AllocPool(t, pod, "net1"); got != poolA {
		t.Fatalf("net1 from %s, want %s", got, poolA)
	}
	if got := e2e.AllocPool(t, pod, "net2"); got != poolB {
		t.Fatalf("net2 from %s, want %s", got, poolB)
	}
	eps := e2e.Endpoints(t, ns)
	if len(eps) != 1 || len(eps[0].Status.Interfaces) != 2 {
		t.Fatalf("want one Endpoint with two interfaces, got %+v", eps)
	}
	e2e.RequireInvariants(t, nil, poolA, poolB)
	if err := e2e.Suite.Ipamd.Client.Release(e2e.Ctx(t), &rpc.ReleaseRequest{ContainerID: e2e.ContainerOf(pod), IfName: "net1", Pod: rpc.Pod{Namespace: ns, Name: pod.Name}}); err != nil {
		t.Fatal(err)
	}
	if a, b := e2e.SettledState(t, poolA), e2e.SettledState(t, poolB); a.AllocatedIPCount != 0 || b.AllocatedIPCount != 1 {
		t.Fatalf("after DEL of net1: %s holds %d, %s holds %d; want 0 and 1", poolA, a.AllocatedIPCount, poolB, b.AllocatedIPCount)
	}
	_, err := e2e.AllocateFor(t, e2e.NewPod(t, ns, "typo", map[string]string{v1.AnnotationIPPools: `[{"interface":"net1","ipv4":"x"}]`}, nil, nil), "net1")
	if err == nil || !strings.Contains(err.Error(), v1.AnnotationIPPools) {
		t.Fatalf("bad annotation: want an error naming %s, got %v", v1.AnnotationIPPools, err)
	}
	e2e.ReleaseAll(t, ns)
}

// A StatefulSet successor scheduled where its predecessor's pool does not reach (node
// affinity) gets a fresh address from an eligible pool, and the old address goes back.
func TestStatefulSetSuccessorOnANodeThePoolDoesNotReach(t *testing.T) {
	const far = "node-far"
	if err := e2e.Suite.Client.Create(e2e.Ctx(t), &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: far, Labels: map[string]string{"zone": "far"}}}); err != nil {
		t.Fatal(err)
	}
	farIpamd, err := harness.StartIpamd(e2e.IpamdOptions(far))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = farIpamd.Stop() })
	v4a, _, _ := e2e.NextSubnet()
	v4b, _, _ := e2e.NextSubnet()
	zoneA := e2e.NewPool(t, v1.IPPoolSpec{Subnet: v4a, NodeAffinity: &metav1.LabelSelector{MatchLabels: map[string]string{"zone": "a"}}}).Name
	anywhere := e2e.NewPool(t, v1.IPPoolSpec{Subnet: v4b}).Name
	ns := e2e.NewNamespace(t)
	owner := &metav1.OwnerReference{APIVersion: "apps/v1", Kind: "StatefulSet", Name: "kv", UID: "sts-uid", Controller: ptr.To(true)}
	first := e2e.NewPod(t, ns, "kv-0", nil, nil, owner)
	if got := e2e.AllocPool(t, first, "net1", zoneA, anywhere); got != zoneA {
		t.Fatalf("first incarnation on node-a: pool %s, want %s", got, zoneA)
	}
	if err := e2e.Suite.Client.Delete(e2e.Ctx(t), first, client.GracePeriodSeconds(0)); err != nil {
		t.Fatal(err)
	}
	e2e.WaitGone(t, "pod "+first.Name+" to be gone", first)
	second := e2e.NewPodOn(t, far, ns, "kv-0", nil, nil, owner)
	resp, err := farIpamd.Client.Allocate(e2e.Ctx(t), &rpc.AllocateRequest{ContainerID: "ctr-kv-0-far", IfName: "net1", Network: "net",
		Pod: rpc.Pod{Namespace: ns, Name: "kv-0", UID: string(second.UID)}, IPv4Pools: []string{zoneA, anywhere}})
	if err != nil || resp.IPs[0].Pool != anywhere {
		t.Fatalf("successor on %s: %+v (%v), want an address from %s", far, resp, err, anywhere)
	}
	if p := e2e.SettledState(t, zoneA); p.AllocatedIPCount != 0 {
		t.Fatalf("the predecessor's address in %s was not given back: %+v", zoneA, p)
	}
	e2e.RequireInvariants(t, nil, zoneA, anywhere)
	if err := farIpamd.Client.Release(e2e.Ctx(t), &rpc.ReleaseRequest{ContainerID: "ctr-kv-0-far", Pod: rpc.Pod{Namespace: ns, Name: "kv-0"}}); err != nil {
		t.Fatal(err)
	}
	e2e.RequireNothingLeft(t, ns, anywhere)
}

// One pool shared by several namespaces through namespaceAffinity; a namespace outside
// it is refused with the reason.
func TestNamespaceAffinitySharesAPool(t *testing.T) {
	v4, _, _ := e2e.NextSubnet()
	team := "team-" + rand.String(4)
	pool := e2e.NewPool(t, v1.IPPoolSpec{Subnet: v4, NamespaceAffinity: &metav1.LabelSelector{MatchLabels: map[string]string{"team": team}}}).Name
	inTeam := map[string]string{"team": team}
	a, b, outside := e2e.NewNamespaceWith(t, nil, inTeam), e2e.NewNamespaceWith(t, nil, inTeam), e2e.NewNamespace(t)
	for _, ns := range []string{a, b} {
		if got := e2e.AllocPool(t, e2e.NewPod(t, ns, "p", nil, nil, nil), "net1", pool); got != pool {
			t.Fatalf("namespace %s: pool %s", ns, got)
		}
	}
	_, err := e2e.AllocateFor(t, e2e.NewPod(t, outside, "p", nil, nil, nil), "net1", pool)
	if err == nil || !strings.Contains(err.Error(), pool+": namespaceAffinity") || !strings.Contains(err.Error(), "namespace "+outside) {
		t.Fatalf("namespace outside the affinity: %v", err)
	}
	e2e.RequireInvariants(t, nil, pool)
	e2e.ReleaseAll(t, a, b, outside)
}
