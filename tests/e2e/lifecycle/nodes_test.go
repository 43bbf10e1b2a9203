package lifecycle

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/tests/e2e"
	"github.com/underpool/underpool/tests/harness"
)

// Node failures and maintenance on a real control plane: what a cluster does to pods when
// a node is drained, its kubelet dies or its Node object is deleted, and what underpool
// must do meanwhile (DESIGN.md invariants 1, 2 and 8): an address stays held for as long
// as its pod object exists, and comes back once the object is gone.

// groupLabel marks a test's own simulated nodes, so its workloads land on them only.
const groupLabel = "underpool.test/group"

// nodeGroup labels a test's nodes with its group and puts them in a zone of their own. The
// zone matters: the node-lifecycle controller stops NoExecute (taint-based) eviction in a
// small zone with more than two unhealthy nodes making up at least 55% of it, and the
// suite's node-a and node-b, which never post a status, are unhealthy nodes of the
// default zone; one more dead node there would stop every eviction.
func nodeGroup(group string) func(int) map[string]string {
	return func(int) map[string]string {
		return map[string]string{groupLabel: group, corev1.LabelTopologyZone: "zone-" + group}
	}
}

// newNodeGroupLifecycle is a lifecycle of two nodes in a group of their own, on a pool of
// 32 addresses.
func newNodeGroupLifecycle(t *testing.T) (*lifecycle, *v1.IPPool, string) {
	t.Helper()
	_, _, third := e2e.NextSubnet()
	pool := e2e.NewPool(t, v1.IPPoolSpec{Subnet: fmt.Sprintf("10.250.%d.32/27", third)})
	group := rand.String(6)
	return newLifecycle(t, lifecycleOptions{nodes: 2, ipv4Pools: []string{pool.Name}, nodeLabels: nodeGroup(group)}), pool, group
}

// A StatefulSet on node 0 of two; node 0 is drained as `kubectl drain` does it: cordoned,
// then each of its pods evicted through the Eviction API. The set's pods come back on
// node 1 under their names, each with the address it had, and at no moment do two pods
// (Endpoints or live sandboxes) share an address.
func TestNodeDrainMovesStatefulSetPodsKeepingAddresses(t *testing.T) {
	lc, pool, group := newNodeGroupLifecycle(t)
	n0, n1 := lc.nodes[0], lc.nodes[1]

	// Deterministic placement: node 1 is cordoned while the set starts, so every pod is
	// on node 0, the node to drain.
	lc.cordon(n1, true)
	sts := lc.statefulSet("db", 3)
	sts.Spec.Template.Spec.NodeSelector = map[string]string{groupLabel: group}
	lc.create(sts)
	pods := lc.waitReady("db", 3)
	for name, p := range pods {
		if p.Spec.NodeName != n0.name {
			t.Fatalf("%s is on %s with node 1 cordoned, want %s", name, p.Spec.NodeName, n0.name)
		}
	}
	before := lc.addresses()
	if len(before) != 3 {
		t.Fatalf("addresses before the drain: %v", before)
	}
	for name := range pods {
		if got := lc.sandboxAddresses(n0, name); len(got) != 1 || got[0] != before[name] {
			t.Fatalf("%s's sandbox has %v on net1, its Endpoint %s", name, got, before[name])
		}
	}
	lc.cordon(n1, false)
	lc.requireInvariants(pool.Name)

	// The drain, watched all along for an address held twice.
	watch := e2e.WatchInvariants(t, e2e.HeldTwiceInCluster, lc.sandboxesSharing)
	lc.cordon(n0, true)
	for _, p := range lc.pods("db") {
		if p.Spec.NodeName == n0.name {
			lc.evict(p)
		}
	}
	var moved map[string]corev1.Pod
	lc.eventually("every pod of db recreated on "+n1.name, 2*time.Minute, func() (bool, string) {
		moved = map[string]corev1.Pod{}
		var states []string
		for _, p := range lc.pods("db") {
			states = append(states, fmt.Sprintf("%s:%s/%s", p.Name, p.Status.Phase, p.Spec.NodeName))
			if p.DeletionTimestamp == nil && harness.PodReady(&p) && p.Spec.NodeName == n1.name {
				moved[p.Name] = p
			}
		}
		return len(moved) == 3, strings.Join(states, " ")
	})
	watch.Stop() // fails on any address held twice during the drain
	t.Logf("drain watched over %d samples", watch.Samples)

	after := lc.addresses()
	for name, addr := range before {
		if moved[name].UID == pods[name].UID {
			t.Errorf("%s was not recreated by the drain", name)
		}
		if after[name] != addr {
			t.Errorf("%s had %s on %s, %s after the drain to %s", name, addr, n0.name, after[name], n1.name)
		}
		if got := lc.sandboxAddresses(n1, name); len(got) != 1 || got[0] != addr {
			t.Errorf("%s's sandbox on %s has %v on net1, want %s", name, n1.name, got, addr)
		}
		if _, ok := n0.kubelet.Sandbox(lc.ns, name); ok {
			t.Errorf("%s still has a sandbox on the drained %s", name, n0.name)
		}
	}
	lc.requireInvariants(pool.Name)

	lc.deleteAll(sts)
	lc.requireNothingLeft(pool.Name)
}

// A Deployment on node 0 of two; node 0's kubelet dies. The node goes NotReady, the taint
// manager evicts the pods (they tolerate unreachable for 2 s only), and with no kubelet to
// finish them they stay Terminating while the Deployment starts replacements on node 1.
// The Terminating pods' addresses stay held (their containers still run); the
// replacements get others. Force-deleting the stuck pods, as an operator would, gives
// their addresses back through recycling; the kubelet, started again, tears down the
// sandboxes of the pods that went while it was dead.
func TestDeadKubeletKeepsAddressesUntilPodsAreGone(t *testing.T) {
	lc, pool, group := newNodeGroupLifecycle(t)
	n0, n1 := lc.nodes[0], lc.nodes[1]

	lc.cordon(n1, true)
	dep := lc.deployment("api", 2, nil)
	dep.Spec.Template.Spec.NodeSelector = map[string]string{groupLabel: group}
	dep.Spec.Template.Spec.Tolerations = []corev1.Toleration{
		{Key: corev1.TaintNodeNotReady, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute, TolerationSeconds: ptr.To[int64](2)},
		{Key: corev1.TaintNodeUnreachable, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute, TolerationSeconds: ptr.To[int64](2)},
	}
	lc.create(dep)
	old := lc.waitReady("api", 2)
	for name, p := range old {
		if p.Spec.NodeName != n0.name {
			t.Fatalf("%s is on %s with node 1 cordoned, want %s", name, p.Spec.NodeName, n0.name)
		}
	}
	oldAddr := lc.addresses()
	if len(oldAddr) != 2 {
		t.Fatalf("addresses of the first pods: %v", oldAddr)
	}
	lc.cordon(n1, false)
	lc.requireInvariants(pool.Name)

	// The kubelet dies; its containers (the sandboxes) keep running.
	n0.kubelet.Stop()
	var fresh map[string]corev1.Pod
	lc.eventually("the pods on the dead "+n0.name+" evicted and replaced on "+n1.name, 2*time.Minute, func() (bool, string) {
		fresh = map[string]corev1.Pod{}
		terminating := 0
		var states []string
		for _, p := range lc.pods("api") {
			states = append(states, fmt.Sprintf("%s:%s/%s/deleting=%t", p.Name, p.Status.Phase, p.Spec.NodeName, p.DeletionTimestamp != nil))
			if _, isOld := old[p.Name]; isOld {
				if p.DeletionTimestamp != nil {
					terminating++
				}
			} else if p.DeletionTimestamp == nil && harness.PodReady(&p) && p.Spec.NodeName == n1.name {
				fresh[p.Name] = p
			}
		}
		return terminating == 2 && len(fresh) == 2, strings.Join(states, " ")
	})

	// While the old pod objects exist, Terminating on a dead node, their addresses stay
	// held though recycling runs every second; the replacements hold others.
	hold := func() {
		t.Helper()
		addrs := lc.addresses()
		seen := map[string]string{}
		for name, a := range addrs {
			if prev, dup := seen[a]; dup {
				t.Fatalf("INVARIANT: %s held by %s and %s", a, prev, name)
			}
			seen[a] = name
		}
		for name := range fresh {
			if addrs[name] == "" {
				t.Fatalf("replacement %s holds no address: %s", name, mapString(addrs))
			}
		}
		for name, a := range oldAddr {
			p := &corev1.Pod{}
			if err := e2e.Suite.Client.Get(e2e.Ctx(t), client.ObjectKey{Namespace: lc.ns, Name: name}, p); err != nil {
				t.Fatalf("old pod %s: %v", name, err)
			}
			if p.DeletionTimestamp == nil {
				t.Fatalf("old pod %s is not terminating", name)
			}
			if addrs[name] != a {
				t.Fatalf("%s, Terminating on the dead %s, held %s, now its Endpoint holds %q", name, n0.name, a, addrs[name])
			}
			if !e2e.PoolHolds(t, pool.Name, a) {
				t.Fatalf("pool %s no longer holds %s of the Terminating %s", pool.Name, a, name)
			}
			sb, ok := n0.kubelet.Sandbox(lc.ns, name)
			if !ok {
				t.Fatalf("the dead kubelet lost the sandbox of %s", name)
			}
			if _, err := os.Stat(sb.NetNS.Path()); err != nil {
				t.Fatalf("sandbox netns of %s: %v", name, err)
			}
			if got := harness.GlobalAddrs(sb.NetNS.Path(), "net1"); len(got) != 1 || got[0] != a {
				t.Fatalf("the still running sandbox of %s has %v on net1, want %s", name, got, a)
			}
		}
	}
	e2e.HoldFor(5*time.Second, hold)
	lc.requireInvariants(pool.Name)

	// Force-delete the stuck pods, as an operator does for a node that will not come back
	// soon: the pod objects go at once, and recycling gives their addresses back.
	for name, p := range old {
		err := e2e.Suite.Client.Delete(e2e.Ctx(t), &p, client.GracePeriodSeconds(0), client.Preconditions{UID: ptr.To(p.UID)})
		if err != nil && !apierrors.IsNotFound(err) {
			t.Fatalf("force-deleting %s: %v", name, err)
		}
	}
	lc.eventually("the force-deleted pods' addresses back in the pool", time.Minute, func() (bool, string) {
		addrs := lc.addresses()
		for name, a := range oldAddr {
			if addrs[name] != "" {
				return false, fmt.Sprintf("%s's Endpoint still holds %s", name, addrs[name])
			}
			if e2e.PoolHolds(t, pool.Name, a) {
				return false, fmt.Sprintf("pool still holds %s of %s", a, name)
			}
		}
		return e2e.PoolMatchesEndpoints(t, pool.Name)
	})
	freshAddr := lc.addresses()
	for name := range fresh {
		if freshAddr[name] == "" {
			t.Fatalf("replacement %s lost its address: %s", name, mapString(freshAddr))
		}
	}
	// The dead node's sandboxes still carry the released addresses, as containers of
	// force-deleted pods still run on a partitioned node; requireInvariants would rightly
	// call that a violation, so it runs once the kubelet came back and cleaned up.

	if err := n0.kubelet.Start(); err != nil {
		t.Fatalf("restarting the kubelet of %s: %v", n0.name, err)
	}
	lc.eventually("the restarted kubelet of "+n0.name+" tearing down the sandboxes of the gone pods", time.Minute, func() (bool, string) {
		for _, sb := range n0.kubelet.Sandboxes() {
			if sb.PodNamespace == lc.ns {
				return false, "sandbox of " + sb.PodName + " left"
			}
		}
		return true, ""
	})
	// Their DEL (with the old sandbox IDs) must not touch what the replacements hold.
	nowAddr := lc.addresses()
	for name := range fresh {
		if nowAddr[name] != freshAddr[name] {
			t.Errorf("replacement %s held %s, %q after the old sandboxes' DEL", name, freshAddr[name], nowAddr[name])
		}
		if got := lc.sandboxAddresses(n1, name); len(got) != 1 || got[0] != freshAddr[name] {
			t.Errorf("replacement %s's sandbox has %v on net1, want %s", name, got, freshAddr[name])
		}
	}
	lc.requireInvariants(pool.Name)

	lc.deleteAll(dep)
	lc.requireNothingLeft(pool.Name)
}

// A Deployment's pod runs on node 0; node 0 leaves the cluster (kubelet and ipamd dead,
// the Node object deleted) while the pod object still exists. The address stays held,
// though the controller recycles every second and the Endpoint names a node that no
// longer exists; once the pod object is gone (the controller manager's pod GC deletes
// pods bound to missing nodes), the underpool controller gives the address back: no
// ipamd looks at another node's Endpoints.
func TestNodeObjectDeletedWhilePodsRun(t *testing.T) {
	lc, pool, group := newNodeGroupLifecycle(t)
	n0, n1 := lc.nodes[0], lc.nodes[1]

	lc.cordon(n1, true)
	dep := lc.deployment("worker", 1, nil)
	dep.Spec.Template.Spec.NodeSelector = map[string]string{groupLabel: group}
	lc.create(dep)
	var pod corev1.Pod
	for _, p := range lc.waitReady("worker", 1) {
		pod = p
	}
	if pod.Spec.NodeName != n0.name {
		t.Fatalf("%s is on %s with node 1 cordoned, want %s", pod.Name, pod.Spec.NodeName, n0.name)
	}
	addr := lc.addresses()[pod.Name]
	if addr == "" {
		t.Fatalf("%s holds no address: %s", pod.Name, mapString(lc.addresses()))
	}
	lc.cordon(n1, false)
	lc.requireInvariants(pool.Name)

	// Node 0 leaves: its kubelet and ipamd stop, its Node object is deleted. Its
	// sandbox stays, as the container of a node nobody told would.
	n0.kubelet.Stop()
	if err := n0.ipamd.Stop(); err != nil {
		t.Fatalf("stopping the ipamd of %s: %v", n0.name, err)
	}
	if err := e2e.Suite.Client.Delete(e2e.Ctx(t), &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n0.name}}); err != nil {
		t.Fatalf("deleting Node %s: %v", n0.name, err)
	}
	lc.eventually("Node "+n0.name+" gone", 30*time.Second, func() (bool, string) {
		err := e2e.Suite.Client.Get(e2e.Ctx(t), client.ObjectKey{Name: n0.name}, &corev1.Node{})
		return apierrors.IsNotFound(err), fmt.Sprintf("get: %v", err)
	})

	// While the pod object exists its address stays held, though the controller recycles
	// gone nodes' Endpoints every second with 2 s grace and the Endpoint's node is gone.
	e2e.HoldFor(8*time.Second, func() {
		t.Helper()
		p := &corev1.Pod{}
		err := e2e.Suite.Client.Get(e2e.Ctx(t), client.ObjectKeyFromObject(&pod), p)
		if apierrors.IsNotFound(err) {
			return // pod GC was quicker than the hold period: the checks below cover the rest
		}
		if err != nil {
			t.Fatalf("pod %s: %v", pod.Name, err)
		}
		if got := lc.addresses()[pod.Name]; got != addr {
			t.Fatalf("%s, whose node was deleted, held %s; its Endpoint now holds %q", pod.Name, addr, got)
		}
		if !e2e.PoolHolds(t, pool.Name, addr) {
			t.Fatalf("pool %s no longer holds %s of %s, whose pod object exists", pool.Name, addr, pod.Name)
		}
	})

	// Pod GC deletes pods bound to a node that has been missing for its 40 s quarantine
	// (checked every 20 s), force-deleting them; no kubelet is involved.
	lc.eventually("pod GC deleting "+pod.Name+" of the deleted node", 2*time.Minute, func() (bool, string) {
		p := &corev1.Pod{}
		err := e2e.Suite.Client.Get(e2e.Ctx(t), client.ObjectKeyFromObject(&pod), p)
		if apierrors.IsNotFound(err) || (err == nil && p.UID != pod.UID) {
			return true, ""
		}
		return false, fmt.Sprintf("pod %s still exists (phase %s, deleting=%t, err %v)", pod.Name, p.Status.Phase, p.DeletionTimestamp != nil, err)
	})
	lc.eventually(addr+" back in the pool through the controller's recycling of gone nodes", time.Minute, func() (bool, string) {
		if got := lc.addresses()[pod.Name]; got != "" {
			return false, fmt.Sprintf("%s's Endpoint still holds %s", pod.Name, got)
		}
		if e2e.PoolHolds(t, pool.Name, addr) {
			return false, fmt.Sprintf("pool still holds %s", addr)
		}
		return e2e.PoolMatchesEndpoints(t, pool.Name)
	})
	lc.eventually("the replacement of "+pod.Name+" ready on "+n1.name, 2*time.Minute, func() (bool, string) {
		var states []string
		for _, p := range lc.pods("worker") {
			states = append(states, fmt.Sprintf("%s:%s/%s", p.Name, p.Status.Phase, p.Spec.NodeName))
			if p.UID != pod.UID && p.DeletionTimestamp == nil && harness.PodReady(&p) && p.Spec.NodeName == n1.name {
				return lc.addresses()[p.Name] != "", strings.Join(states, " ")
			}
		}
		return false, strings.Join(states, " ")
	})
	// The machine goes for good: its namespaces vanish without DEL (the address they
	// carried is free already). Until then the old sandbox still carries the released
	// address, which requireInvariants would rightly report.
	if err := n0.kubelet.Close(); err != nil {
		t.Fatalf("closing the kubelet of %s: %v", n0.name, err)
	}
	lc.requireInvariants(pool.Name)

	lc.deleteAll(dep)
	lc.requireNothingLeft(pool.Name)
}

// cordon sets or clears a node's spec.unschedulable, as `kubectl cordon` and `uncordon` do.
func (lc *lifecycle) cordon(n *simNode, unschedulable bool) {
	lc.t.Helper()
	patch := client.RawPatch(types.MergePatchType, []byte(fmt.Sprintf(`{"spec":{"unschedulable":%t}}`, unschedulable)))
	if err := e2e.Suite.Client.Patch(e2e.Ctx(lc.t), &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n.name}}, patch); err != nil {
		lc.t.Fatalf("cordon %s (%t): %v", n.name, unschedulable, err)
	}
}

// evict asks the Eviction API to evict pod, retrying what `kubectl drain` retries (429 from
// a disruption budget, a transient error); a pod already gone is evicted.
func (lc *lifecycle) evict(pod corev1.Pod) {
	lc.t.Helper()
	lc.eventually("eviction of "+pod.Name, time.Minute, func() (bool, string) {
		ev := &policyv1.Eviction{ObjectMeta: metav1.ObjectMeta{Namespace: pod.Namespace, Name: pod.Name},
			DeleteOptions: &metav1.DeleteOptions{Preconditions: metav1.NewUIDPreconditions(string(pod.UID))}}
		err := e2e.Suite.Client.SubResource("eviction").Create(e2e.Ctx(lc.t), &pod, ev)
		if err == nil || apierrors.IsNotFound(err) {
			return true, ""
		}
		return false, err.Error()
	})
}

// A Deployment's two pods run on node 0, on a pool of exactly two addresses. Node 0's
// machine dies (kubelet, ipamd and the pods' namespaces gone) while its Node object stays; once it is
// NotReady an operator taints it node.kubernetes.io/out-of-service, as for a node shut
// down for good. The taint manager evicts the pods and the controller manager's pod GC
// force-deletes them (terminating pods of an unready, out-of-service node). No ipamd is
// left to recycle node 0's Endpoints: the underpool controller does, within its recycle
// interval, and the replacements on node 1, waiting for a free address, get those two.
func TestOutOfServiceNodeGivesItsGonePodsAddressesBack(t *testing.T) {
	_, _, third := e2e.NextSubnet()
	b := fmt.Sprintf("10.250.%d.", third)
	pool := e2e.NewPool(t, v1.IPPoolSpec{Subnet: b + "0/24", IPs: []string{b + "10-" + b + "11"}}) // sized to the replicas
	group := rand.String(6)
	lc := newLifecycle(t, lifecycleOptions{nodes: 2, ipv4Pools: []string{pool.Name}, nodeLabels: nodeGroup(group)})
	n0, n1 := lc.nodes[0], lc.nodes[1]

	lc.cordon(n1, true)
	dep := lc.deployment("api", 2, nil)
	dep.Spec.Template.Spec.NodeSelector = map[string]string{groupLabel: group}
	lc.create(dep)
	old := lc.waitReady("api", 2)
	for name, p := range old {
		if p.Spec.NodeName != n0.name {
			t.Fatalf("%s is on %s with node 1 cordoned, want %s", name, p.Spec.NodeName, n0.name)
		}
	}
	oldAddr := lc.addresses()
	if len(oldAddr) != 2 {
		t.Fatalf("addresses of the first pods: %v", oldAddr)
	}
	lc.cordon(n1, false)
	lc.requireInvariants(pool.Name)

	// The machine dies: kubelet, ipamd and the pods' namespaces go with it (no DEL, and
	// nothing left to answer ARP for the addresses), the Node object stays.
	watch := e2e.WatchInvariants(t, e2e.HeldTwiceInCluster, lc.sandboxesSharing)
	if err := n0.kubelet.Close(); err != nil {
		t.Fatalf("closing the kubelet of %s: %v", n0.name, err)
	}
	if err := n0.ipamd.Stop(); err != nil {
		t.Fatalf("stopping the ipamd of %s: %v", n0.name, err)
	}
	lc.eventually(n0.name+" NotReady", time.Minute, func() (bool, string) {
		n := &corev1.Node{}
		if err := e2e.Suite.Client.Get(e2e.Ctx(t), client.ObjectKey{Name: n0.name}, n); err != nil {
			return false, err.Error()
		}
		for _, c := range n.Status.Conditions {
			if c.Type == corev1.NodeReady {
				return c.Status != corev1.ConditionTrue, fmt.Sprintf("Ready=%s", c.Status)
			}
		}
		return false, "no Ready condition"
	})
	lc.taint(n0, corev1.Taint{Key: corev1.TaintNodeOutOfService, Value: "nodeshutdown", Effect: corev1.TaintEffectNoExecute})

	lc.eventually("the pod GC force-deleting the pods of the out-of-service "+n0.name, 2*time.Minute, func() (bool, string) {
		var left []string
		for _, p := range lc.pods("api") {
			if o, isOld := old[p.Name]; isOld && o.UID == p.UID {
				left = append(left, fmt.Sprintf("%s deleting=%t", p.Name, p.DeletionTimestamp != nil))
			}
		}
		return len(left) == 0, strings.Join(left, " ")
	})
	// back in the pool: the gone pods' records released, and the pool holding only what
	// Endpoints hold (a replacement waiting on its ADD may take an address at once)
	lc.eventually("the gone pods' addresses back in the pool through the controller", 30*time.Second, func() (bool, string) {
		addrs := lc.addresses()
		for name := range oldAddr {
			if addrs[name] != "" {
				return false, fmt.Sprintf("%s's Endpoint still holds %s", name, addrs[name])
			}
		}
		return e2e.PoolMatchesEndpoints(t, pool.Name)
	})
	lc.eventually("the replacements ready on "+n1.name+" with the two addresses", 2*time.Minute, func() (bool, string) {
		addrs := lc.addresses()
		var states []string
		ready := 0
		for _, p := range lc.pods("api") {
			states = append(states, fmt.Sprintf("%s:%s/%s/%q", p.Name, p.Status.Phase, p.Spec.NodeName, addrs[p.Name]))
			if _, isOld := old[p.Name]; !isOld && p.DeletionTimestamp == nil && harness.PodReady(&p) && p.Spec.NodeName == n1.name && addrs[p.Name] != "" {
				ready++
			}
		}
		return ready == 2, strings.Join(states, " ")
	})
	watch.Stop()
	lc.requireInvariants(pool.Name)

	lc.deleteAll(dep)
	lc.requireNothingLeft(pool.Name)
}

// taint adds a taint to a node, as `kubectl taint` does.
func (lc *lifecycle) taint(n *simNode, taint corev1.Taint) {
	lc.t.Helper()
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		node := &corev1.Node{}
		if err := e2e.Suite.Client.Get(e2e.Ctx(lc.t), client.ObjectKey{Name: n.name}, node); err != nil {
			return err
		}
		node.Spec.Taints = append(node.Spec.Taints, taint)
		return e2e.Suite.Client.Update(e2e.Ctx(lc.t), node)
	})
	if err != nil {
		lc.t.Fatalf("tainting %s with %s: %v", n.name, taint.Key, err)
	}
}
