package lifecycle

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/tests/e2e"
	"github.com/underpool/underpool/tests/harness"
	"github.com/underpool/underpool/tests/harness/kubelet"
)

// Deleting a namespace deletes its pods gracefully and, before Kubernetes 1.33 ordered
// namespace deletion (or with it off), its Endpoints at the same time. Pods whose
// containers ignore SIGTERM stay Terminating, their sandboxes up, for their whole grace
// period; all that while their Endpoints must stay (held by the protection finalizer) and
// keep the addresses, so neither the controller's orphan sweeper nor any ipamd's
// recycling frees them, and a pod elsewhere cannot get them. The pool has exactly as many
// addresses as the namespace's pods, so a pod in a second namespace proves nothing was
// handed out again: its ADD keeps failing until the pods are gone. Then the Endpoints go,
// the namespace goes, and the waiting pod gets one of the freed addresses.
func TestNamespaceDeletionHoldsAddressesThroughGracePeriod(t *testing.T) {
	const n = 2
	const grace = 15
	v4, _, third := e2e.NextSubnet()
	b := fmt.Sprintf("10.250.%d.", third)
	pool := e2e.NewPool(t, v1.IPPoolSpec{Subnet: v4, IPs: []string{b + "10", b + "11"}})
	lc := newLifecycle(t, lifecycleOptions{nodes: 2, ipv4Pools: []string{pool.Name}})
	// the second namespace, on the same nodes, with its own NAD naming the same pool
	other := lc.sub(t)

	dep := lc.deployment("hold", n, map[string]string{kubelet.IgnoreSIGTERMAnnotation: "true"})
	dep.Spec.Template.Spec.TerminationGracePeriodSeconds = ptr.To[int64](grace)
	lc.create(dep)
	pods := lc.waitReady("hold", n)
	held := lc.addresses()
	if len(held) != n {
		t.Fatalf("Endpoints hold %v, want %d addresses", held, n)
	}
	for name, pod := range pods {
		if got := lc.sandboxAddresses(lc.node(pod), name); len(got) != 1 || got[0] != held[name] {
			t.Fatalf("%s's sandbox has %v on net1, its Endpoint %s", name, got, held[name])
		}
	}
	lc.requireInvariants(pool.Name)
	if got := e2e.FreshState(t, pool.Name).AllocatedIPCount; got != n {
		t.Fatalf("pool holds %d, want %d", got, n)
	}

	// the pool is full: the second namespace's pod cannot start
	other.create(other.deployment("late", 1, nil))
	other.eventually("the late pod's sandbox failing for an exhausted pool", time.Minute, func() (bool, string) {
		return other.sandboxFailedWith("late", pool.Name, "exhausted")
	})
	other.requireNoAddress("late")

	if err := e2e.Suite.Client.Delete(e2e.Ctx(t), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: lc.ns}}); err != nil {
		t.Fatalf("deleting namespace %s: %v", lc.ns, err)
	}
	var until time.Time
	lc.eventually("the namespace's pods Terminating", time.Minute, func() (bool, string) {
		var states []string
		terminating := 0
		for _, p := range lc.pods("hold") {
			if p.DeletionTimestamp != nil {
				terminating++
				until = p.DeletionTimestamp.Time
			}
			states = append(states, fmt.Sprintf("%s:%s deleting=%v", p.Name, p.Status.Phase, p.DeletionTimestamp != nil))
		}
		return terminating == n, fmt.Sprintf("pods %v", states)
	})
	// Since Kubernetes 1.33 (OrderedNamespaceDeletion) the namespace controller deletes
	// the pods first and everything else only once they are gone; before, and wherever
	// that gate is off, it deleted the Endpoints at the same time as the pods. Do what it
	// did then, so the Endpoints are deleted while their pods still run.
	if err := e2e.Suite.Client.DeleteAllOf(e2e.Ctx(t), &v1.Endpoint{}, client.InNamespace(lc.ns)); err != nil {
		t.Fatalf("deleting the namespace's Endpoints: %v", err)
	}
	lc.eventually("the namespace's Endpoints marked for deletion", time.Minute, func() (bool, string) {
		eps := e2e.Endpoints(t, lc.ns)
		for _, ep := range eps {
			if ep.DeletionTimestamp == nil {
				return false, ep.Name + " has no deletionTimestamp yet"
			}
			if !slices.Contains(ep.Finalizers, v1.EndpointProtection) {
				return false, fmt.Sprintf("%s has finalizers %v, want %s", ep.Name, ep.Finalizers, v1.EndpointProtection)
			}
		}
		return len(eps) == n, fmt.Sprintf("%d Endpoints", len(eps))
	})

	// While the pods exist (Terminating, sandboxes up), everything stays held. Each sample
	// reads the state first and counts only if the pods still exist afterwards: then they
	// existed during the reads too (no pod can be made in a terminating namespace).
	samples := 0
	for time.Now().Before(until) {
		problems := lc.holdProblems(pods, held, pool.Name)
		problems = append(problems, other.noAddressProblems("late")...)
		live := lc.pods("hold")
		if len(live) != n {
			break // grace period over: the pods are going
		}
		for _, p := range live {
			if p.DeletionTimestamp == nil {
				problems = append(problems, p.Name+" is not terminating")
			}
		}
		if len(problems) > 0 {
			t.Fatalf("while the namespace's pods are Terminating: %s", strings.Join(problems, "; "))
		}
		samples++
		time.Sleep(500 * time.Millisecond)
	}
	if samples == 0 {
		// nothing looked at is nothing proven: the grace period ended before the first look
		t.Fatalf("no sample taken while the namespace's pods were Terminating: the grace period ended first")
	}
	if samples < 4 {
		// nothing wrong seen, but little looked at (a very slow machine): say so
		t.Logf("only %d samples taken while the pods were Terminating", samples)
	}
	t.Logf("%d samples: Endpoints, pool and sandboxes held through the grace period", samples)
	lc.requireInvariants(pool.Name)

	lc.eventually("namespace "+lc.ns+" gone", 2*time.Minute, func() (bool, string) {
		err := e2e.Suite.Client.Get(e2e.Ctx(t), client.ObjectKey{Name: lc.ns}, &corev1.Namespace{})
		if err == nil {
			return false, fmt.Sprintf("still there; %d Endpoints, %d pods", len(e2e.Endpoints(t, lc.ns)), len(lc.pods("hold")))
		}
		return e2e.IsNotFound(err), err.Error()
	})
	lc.requireNothingLeft() // the pool is checked below: the late pod holds one address now

	late := other.waitReady("late", 1)
	addrs := other.addresses()
	for name, pod := range late {
		addr := addrs[name]
		if !slices.Contains(values(held), addr) {
			t.Fatalf("late pod %s got %q, want one of the freed addresses %v", name, addr, values(held))
		}
		if got := other.sandboxAddresses(other.node(pod), name); len(got) != 1 || got[0] != addr {
			t.Fatalf("late pod %s's sandbox has %v on net1, its Endpoint %s", name, got, addr)
		}
	}
	other.requireInvariants(pool.Name)

	if err := e2e.Suite.Client.Delete(e2e.Ctx(t), &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: other.ns, Name: "late"}}); err != nil {
		t.Fatal(err)
	}
	other.requireNothingLeft(pool.Name)
}

// holdProblems says what is not as it must be while the pods (by name, with the addresses
// their Endpoints held before) exist: each Endpoint there, holding its address; each
// sandbox up with it on net1; the pool holding exactly those; no address held twice
// anywhere.
func (lc *lifecycle) holdProblems(pods map[string]corev1.Pod, held map[string]string, pool string) []string {
	lc.t.Helper()
	var problems []string
	now := lc.addresses()
	for name, addr := range held {
		if now[name] != addr {
			problems = append(problems, fmt.Sprintf("Endpoint %s holds %q, held %s", name, now[name], addr))
		}
		if got := lc.sandboxAddresses(lc.node(pods[name]), name); len(got) != 1 || got[0] != addr {
			problems = append(problems, fmt.Sprintf("%s's sandbox has %v on net1, want %s", name, got, addr))
		}
	}
	if p := e2e.SettledState(lc.t, pool); p.AllocatedIPCount != int64(len(held)) {
		problems = append(problems, fmt.Sprintf("pool %s holds %d (%q), want %d", pool, p.AllocatedIPCount, p.Allocated, len(held)))
	}
	if ok, why := e2e.PoolMatchesEndpoints(lc.t, pool); !ok {
		problems = append(problems, why)
	}
	var all v1.EndpointList
	if err := e2e.Suite.Client.List(e2e.Ctx(lc.t), &all); err != nil {
		lc.t.Fatal(err)
	}
	for _, dup := range e2e.HeldTwice(all.Items) {
		problems = append(problems, "INVARIANT: "+dup)
	}
	return problems
}

// noAddressProblems says how the pods of app hold an address though they must not: an
// Endpoint, a sandbox, or a Ready pod.
func (lc *lifecycle) noAddressProblems(app string) []string {
	lc.t.Helper()
	var problems []string
	for _, p := range lc.pods(app) {
		ep := &v1.Endpoint{}
		if err := e2e.Suite.Client.Get(e2e.Ctx(lc.t), client.ObjectKey{Namespace: lc.ns, Name: p.Name}, ep); err == nil {
			problems = append(problems, fmt.Sprintf("pod %s has an Endpoint holding %+v", p.Name, ep.Status.Interfaces))
		} else if !e2e.IsNotFound(err) {
			lc.t.Fatal(err)
		}
		for _, n := range lc.nodes {
			if sb, ok := n.kubelet.Sandbox(lc.ns, p.Name); ok {
				problems = append(problems, fmt.Sprintf("pod %s has sandbox %.12s on %s (net1: %v)",
					p.Name, sb.ContainerID, n.name, harness.GlobalAddrs(sb.NetNS.Path(), "net1")))
			}
		}
		if harness.PodReady(&p) {
			problems = append(problems, "pod "+p.Name+" is Ready")
		}
	}
	return problems
}

func (lc *lifecycle) requireNoAddress(app string) {
	lc.t.Helper()
	if problems := lc.noAddressProblems(app); len(problems) > 0 {
		lc.t.Fatalf("pods of %s must hold nothing: %s", app, strings.Join(problems, "; "))
	}
}
