package e2e

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
	"github.com/underpool/underpool/tests/harness"
)

// Pool choice follows the documented order: pod annotation > namespace default > the
// network's pools > cluster default pools.
func TestPoolSelectionOrder(t *testing.T) {
	mk := func() string {
		v4, _, _ := nextSubnet()
		return newPool(t, v1.IPPoolSpec{Subnet: v4}).Name
	}
	annotated, nsDefault, network := mk(), mk(), mk()
	v4, _, _ := nextSubnet()
	clusterDefault := newPool(t, v1.IPPoolSpec{Subnet: v4, Default: true}).Name
	// created with its annotation: ipamd reads namespaces from its informer, falling back to
	// the API for one it has not seen yet, so the annotation is never missed
	plainNS, defaultNS := newNamespace(t), newNamespaceWith(t, map[string]string{v1.AnnotationNSDefaultIPv4: `["` + nsDefault + `"]`}, nil)

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
			p := newPod(t, c.ns, c.pod, c.annotations, nil, nil)
			if got := allocPool(t, p, "net1", c.network...); got != c.want {
				t.Errorf("got pool %s, want %s", got, c.want)
			}
		})
	}
	requireInvariants(t, nil, annotated, nsDefault, network, clusterDefault)
	releaseAll(t, plainNS, defaultNS)
}

// Within a list, pools whose affinity does not match or that are exhausted are skipped;
// when nothing fits, the error lists each pool and why.
func TestAlternatesAndAffinity(t *testing.T) {
	// node-a carries zone=a (see TestMain)
	ns := newNamespace(t)
	base := func() string { v4, _, _ := nextSubnet(); return strings.TrimSuffix(v4, "0/24") }
	b1 := base()
	full := newPool(t, v1.IPPoolSpec{Subnet: b1 + "0/24", IPs: []string{b1 + "10"}}).Name
	otherZone := newPool(t, v1.IPPoolSpec{Subnet: base() + "0/24", NodeAffinity: &metav1.LabelSelector{MatchLabels: map[string]string{"zone": "b"}}}).Name
	webOnly := newPool(t, v1.IPPoolSpec{Subnet: base() + "0/24", PodAffinity: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}}).Name
	otherNet := newPool(t, v1.IPPoolSpec{Subnet: base() + "0/24", MultusNames: []string{"storage"}}).Name
	good := newPool(t, v1.IPPoolSpec{Subnet: base() + "0/24", NodeAffinity: &metav1.LabelSelector{MatchLabels: map[string]string{"zone": "a"}}}).Name
	list := []string{full, otherZone, webOnly, otherNet, good}

	first := newPod(t, ns, "first", nil, map[string]string{"app": "db"}, nil)
	if got := allocPool(t, first, "net1", list...); got != full {
		t.Fatalf("first pod: got %s, want the first pool %s", got, full)
	}
	second := newPod(t, ns, "second", nil, map[string]string{"app": "db"}, nil)
	if got := allocPool(t, second, "net1", list...); got != good {
		t.Fatalf("second pod: got %s, want the alternate %s", got, good)
	}
	_, err := allocateFor(t, newPod(t, ns, "third", nil, map[string]string{"app": "db"}, nil), "net1", list[:4]...)
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
	requireInvariants(t, nil, list...)
	releaseAll(t, ns)
}

// Addresses of a ReservedIP are never handed out, whatever the pool says.
func TestReservedIPsAreNeverHandedOut(t *testing.T) {
	v4, _, _ := nextSubnet()
	b := strings.TrimSuffix(v4, "0/24")
	pool := newPool(t, v1.IPPoolSpec{Subnet: v4, IPs: []string{b + "10-" + b + "13"}})
	newReservedIP(t, b+"10-"+b+"11", b+"13")
	waitReservedSeen(t, pool.Name, b+"12")
	ns := newNamespace(t)
	got, err := allocateFor(t, newPod(t, ns, "r1", nil, nil, nil), "net1", pool.Name)
	if err != nil || got.IPs[0].Address != b+"12/24" {
		t.Fatalf("want the only unreserved address %s12, got %+v %v", b, got, err)
	}
	_, err = allocateFor(t, newPod(t, ns, "r2", nil, nil, nil), "net1", pool.Name)
	if err == nil || !strings.Contains(err.Error(), "exhausted") {
		t.Fatalf("reserved addresses were handed out: %v", err)
	}
	requireInvariants(t, nil, pool.Name)
	releaseAll(t, ns)
}

// waitReservedSeen lets ipamd's informer learn the ReservedIP: it allocates and frees a
// probe until the only unreserved address comes out.
func waitReservedSeen(t *testing.T, pool, free string) {
	t.Helper()
	ns := newNamespace(t)
	for i := 0; i < 100; i++ {
		resp, err := suite.ipamd.Client.Allocate(ctx(t), &rpc.AllocateRequest{ContainerID: fmt.Sprintf("probe-%d", i), IfName: "net1",
			Pod: rpc.Pod{Namespace: ns, Name: "probe"}, IPv4Pools: []string{pool}})
		if err != nil {
			t.Fatal(err)
		}
		_ = suite.ipamd.Client.Release(ctx(t), &rpc.ReleaseRequest{ContainerID: fmt.Sprintf("probe-%d", i), Pod: rpc.Pod{Namespace: ns, Name: "probe"}})
		if strings.HasPrefix(resp.IPs[0].Address, free+"/") {
			return
		}
	}
	t.Fatal("ipamd never saw the ReservedIP")
}

// A requested address (multus "ips") is given when it lies in an eligible pool and is
// free; otherwise the error says which.
func TestRequestedIPs(t *testing.T) {
	v4, _, _ := nextSubnet()
	b := strings.TrimSuffix(v4, "0/24")
	pool := newPool(t, v1.IPPoolSpec{Subnet: v4})
	ns := newNamespace(t)
	conf := netConf{Delegate: macvlanOn(newParent(t)), IPv4Pools: []string{pool.Name}}.conflist(t)
	rt := runtimeFor(newPodNS(t), ns, "fixed", "net1")
	rt.CapabilityArgs = map[string]any{"ips": []string{b + "77/24"}, "mac": "02:fa:00:00:00:77"}
	res, err := suite.cni.Add(ctx(t), conf, rt)
	if err != nil {
		t.Fatalf("ADD with ips: %v", err)
	}
	if v4s, _ := ipsOf(t, res); len(v4s) != 1 || v4s[0].String() != b+"77" {
		t.Fatalf("got %v, want %s77", v4s, b)
	}
	if mac := macOf(t, rt.NetNS, "net1"); mac != "02:fa:00:00:00:77" {
		t.Fatalf("net1 MAC = %s, want the requested 02:fa:00:00:00:77", mac)
	}
	for _, c := range []struct{ pod, ip, want string }{
		{"same", b + "77", "already allocated"},       // a second request for a held address
		{"outside", "10.250.250.250", "outside pool"}, // a request outside the pools
	} {
		t.Run(c.want, func(t *testing.T) {
			refused := runtimeFor(newPodNS(t), ns, c.pod, "net1")
			refused.CapabilityArgs = map[string]any{"ips": []string{c.ip}}
			if _, err := suite.cni.Add(ctx(t), conf, refused); err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("requesting %s: want an error saying %q, got %v", c.ip, c.want, err)
			}
		})
	}
	requireInvariants(t, attachmentsOf(rt), pool.Name)
	if err := suite.cni.Del(ctx(t), conf, rt); err != nil {
		t.Fatal(err)
	}
	requireNothingLeft(t, ns, pool.Name)
}

// A StatefulSet pod keeps its address when it is deleted and recreated (new UID).
func TestStatefulSetPodKeepsItsAddress(t *testing.T) {
	v4, _, _ := nextSubnet()
	pool := newPool(t, v1.IPPoolSpec{Subnet: v4})
	ns := newNamespace(t)
	sts := statefulSetOf(ns, "db", 2, nil)
	if err := suite.client.Create(ctx(t), sts); err != nil {
		t.Fatal(err)
	}
	// The real StatefulSet controller makes db-0, and makes it again (new UID) once deleted;
	// it stays Pending (no node has room), which is all ipamd needs.
	first := waitStatefulSetPod(t, ns, "db-0", "")
	a1, err := allocateFor(t, first, "net1", pool.Name)
	if err != nil {
		t.Fatal(err)
	}
	if err := suite.client.Delete(ctx(t), first, client.GracePeriodSeconds(0)); err != nil {
		t.Fatal(err)
	}
	second := waitStatefulSetPod(t, ns, "db-0", first.UID)
	// an unrelated pod in between must not get db-0's address
	if other, err := allocateFor(t, newPod(t, ns, "other", nil, nil, nil), "net1", pool.Name); err != nil || other.IPs[0].Address == a1.IPs[0].Address {
		t.Fatalf("db-0's address went to another pod: %+v %v", other, err)
	}
	a2, err := allocateFor(t, second, "net1", pool.Name)
	if err != nil || a2.IPs[0].Address != a1.IPs[0].Address {
		t.Fatalf("successor got %+v (%v), want %s", a2, err, a1.IPs[0].Address)
	}
	if p := freshPool(t, pool.Name); p.Status.AllocatedIPCount != 2 {
		t.Fatalf("pool holds %d, want 2 (db-0 once, other)", p.Status.AllocatedIPCount)
	}
	requireInvariants(t, nil, pool.Name)
	// a DEL keeps db-0's address while the set wants ordinal 0; once the set is gone, DEL frees it
	if err := suite.client.Delete(ctx(t), sts); err != nil {
		t.Fatal(err)
	}
	waitGone(t, "StatefulSet db gone", sts)
	releaseAll(t, ns)
}

// waitStatefulSetPod waits for the StatefulSet controller to have created pod name with a
// UID other than notUID.
func waitStatefulSetPod(t *testing.T, ns, name string, notUID types.UID) *corev1.Pod {
	t.Helper()
	pod := &corev1.Pod{}
	waitFor(t, "StatefulSet pod "+name, func() bool {
		return suite.client.Get(ctx(t), client.ObjectKey{Namespace: ns, Name: name}, pod) == nil && pod.UID != notUID
	})
	return pod
}

// A pod with two networks gets one allocation per interface from each interface's pools;
// DEL of one interface releases only that one.
func TestMultiNICPerInterfacePools(t *testing.T) {
	v4a, _, _ := nextSubnet()
	v4b, _, _ := nextSubnet()
	poolA, poolB := newPool(t, v1.IPPoolSpec{Subnet: v4a}).Name, newPool(t, v1.IPPoolSpec{Subnet: v4b}).Name
	ns := newNamespace(t)
	pod := newPod(t, ns, "multi", map[string]string{v1.AnnotationIPPools: `[{"interface":"net1","ipv4":["` + poolA + `"]},{"interface":"net2","ipv4":["` + poolB + `"]}]`}, nil, nil)
	if got := allocPool(t, pod, "net1"); got != poolA {
		t.Fatalf("net1 from %s, want %s", got, poolA)
	}
	if got := allocPool(t, pod, "net2"); got != poolB {
		t.Fatalf("net2 from %s, want %s", got, poolB)
	}
	eps := endpoints(t, ns)
	if len(eps) != 1 || len(eps[0].Status.Interfaces) != 2 {
		t.Fatalf("want one Endpoint with two interfaces, got %+v", eps)
	}
	requireInvariants(t, nil, poolA, poolB)
	if err := suite.ipamd.Client.Release(ctx(t), &rpc.ReleaseRequest{ContainerID: containerOf(pod), IfName: "net1", Pod: rpc.Pod{Namespace: ns, Name: pod.Name}}); err != nil {
		t.Fatal(err)
	}
	if a, b := freshPool(t, poolA), freshPool(t, poolB); a.Status.AllocatedIPCount != 0 || b.Status.AllocatedIPCount != 1 {
		t.Fatalf("after DEL of net1: %s holds %d, %s holds %d; want 0 and 1", poolA, a.Status.AllocatedIPCount, poolB, b.Status.AllocatedIPCount)
	}
	_, err := allocateFor(t, newPod(t, ns, "typo", map[string]string{v1.AnnotationIPPools: `[{"interface":"net1","ipv4":"x"}]`}, nil, nil), "net1")
	if err == nil || !strings.Contains(err.Error(), v1.AnnotationIPPools) {
		t.Fatalf("bad annotation: want an error naming %s, got %v", v1.AnnotationIPPools, err)
	}
	releaseAll(t, ns)
}

// A StatefulSet successor scheduled where its predecessor's pool does not reach (node
// affinity) gets a fresh address from an eligible pool, and the old address goes back.
func TestStatefulSetSuccessorOnANodeThePoolDoesNotReach(t *testing.T) {
	const far = "node-far"
	if err := suite.client.Create(ctx(t), &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: far, Labels: map[string]string{"zone": "far"}}}); err != nil {
		t.Fatal(err)
	}
	farIpamd, err := harness.StartIpamd(ipamdOptions(far))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = farIpamd.Stop() })
	v4a, _, _ := nextSubnet()
	v4b, _, _ := nextSubnet()
	zoneA := newPool(t, v1.IPPoolSpec{Subnet: v4a, NodeAffinity: &metav1.LabelSelector{MatchLabels: map[string]string{"zone": "a"}}}).Name
	anywhere := newPool(t, v1.IPPoolSpec{Subnet: v4b}).Name
	ns := newNamespace(t)
	owner := &metav1.OwnerReference{APIVersion: "apps/v1", Kind: "StatefulSet", Name: "kv", UID: "sts-uid", Controller: ptr.To(true)}
	first := newPod(t, ns, "kv-0", nil, nil, owner)
	if got := allocPool(t, first, "net1", zoneA, anywhere); got != zoneA {
		t.Fatalf("first incarnation on node-a: pool %s, want %s", got, zoneA)
	}
	if err := suite.client.Delete(ctx(t), first, client.GracePeriodSeconds(0)); err != nil {
		t.Fatal(err)
	}
	waitGone(t, "pod "+first.Name+" to be gone", first)
	second := newPodOn(t, far, ns, "kv-0", nil, nil, owner)
	resp, err := farIpamd.Client.Allocate(ctx(t), &rpc.AllocateRequest{ContainerID: "ctr-kv-0-far", IfName: "net1", Network: "net",
		Pod: rpc.Pod{Namespace: ns, Name: "kv-0", UID: string(second.UID)}, IPv4Pools: []string{zoneA, anywhere}})
	if err != nil || resp.IPs[0].Pool != anywhere {
		t.Fatalf("successor on %s: %+v (%v), want an address from %s", far, resp, err, anywhere)
	}
	if p := freshPool(t, zoneA); p.Status.AllocatedIPCount != 0 {
		t.Fatalf("the predecessor's address in %s was not given back: %+v", zoneA, p.Status)
	}
	requireInvariants(t, nil, zoneA, anywhere)
	if err := farIpamd.Client.Release(ctx(t), &rpc.ReleaseRequest{ContainerID: "ctr-kv-0-far", Pod: rpc.Pod{Namespace: ns, Name: "kv-0"}}); err != nil {
		t.Fatal(err)
	}
	requireNothingLeft(t, ns, anywhere)
}

// One pool shared by several namespaces through namespaceAffinity; a namespace outside
// it is refused with the reason.
func TestNamespaceAffinitySharesAPool(t *testing.T) {
	v4, _, _ := nextSubnet()
	team := "team-" + rand.String(4)
	pool := newPool(t, v1.IPPoolSpec{Subnet: v4, NamespaceAffinity: &metav1.LabelSelector{MatchLabels: map[string]string{"team": team}}}).Name
	inTeam := map[string]string{"team": team}
	a, b, outside := newNamespaceWith(t, nil, inTeam), newNamespaceWith(t, nil, inTeam), newNamespace(t)
	for _, ns := range []string{a, b} {
		if got := allocPool(t, newPod(t, ns, "p", nil, nil, nil), "net1", pool); got != pool {
			t.Fatalf("namespace %s: pool %s", ns, got)
		}
	}
	_, err := allocateFor(t, newPod(t, outside, "p", nil, nil, nil), "net1", pool)
	if err == nil || !strings.Contains(err.Error(), pool+": namespaceAffinity") || !strings.Contains(err.Error(), "namespace "+outside) {
		t.Fatalf("namespace outside the affinity: %v", err)
	}
	requireInvariants(t, nil, pool)
	releaseAll(t, a, b, outside)
}
