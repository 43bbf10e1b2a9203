package lifecycle

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/core/allocator"
	"github.com/underpool/underpool/core/apppool"
	"github.com/underpool/underpool/tests/e2e"
	"github.com/underpool/underpool/tests/harness"
)

// Bad input end to end (DESIGN.md invariants 4 and 9, README "one bad pool fails only
// itself" and "fixed-IP application pools"): pods made by the real Deployment controller,
// sandboxes by the kubelet stand-ins through multus. A bad object fails only the requests
// that need it, with an error or event naming what is wrong; everything else is served.

// A pod template naming an IPv4 pool in the annotation's "ipv6" list: every sandbox the
// kubelet tries is refused with an error naming the annotation, the pool and its family;
// nothing is allocated, not even from the IPv4 list. A pod naming the same pools the
// right way runs beside it.
func TestPoolOfTheOtherFamilyIsRefusedNamingTheAnnotation(t *testing.T) {
	v4a, _, _ := e2e.NextSubnet()
	v4b, _, _ := e2e.NextSubnet()
	poolA := e2e.NewPool(t, v1.IPPoolSpec{Subnet: v4a}).Name
	poolB := e2e.NewPool(t, v1.IPPoolSpec{Subnet: v4b}).Name
	lc := newLifecycle(t, lifecycleOptions{ipv4Pools: []string{poolA}})
	wrong := lc.deployment("wrong", 1, map[string]string{
		v1.AnnotationIPPool: `{"ipv4":["` + poolA + `"],"ipv6":["` + poolB + `"]}`})
	right := lc.deployment("right", 1, map[string]string{
		v1.AnnotationIPPool: `{"ipv4":["` + poolB + `"]}`})
	lc.create(wrong)
	lc.create(right)

	lc.waitReady("right", 1)
	// two refused sandboxes: the refusal is what every retry gets, not a passing state
	lc.eventually("two sandboxes of wrong refused naming the annotation", 2*time.Minute, func() (bool, string) {
		n, last := lc.sandboxFailures("wrong", v1.AnnotationIPPool, "ipv6", "names IPPool "+poolB, "is IPv4, not IPv6")
		return n >= 2, fmt.Sprintf("%d such events; last: %s", n, last)
	})
	pods := lc.pods("wrong")
	if len(pods) != 1 {
		t.Fatalf("%d pods of wrong, want 1", len(pods))
	}
	if harness.PodReady(&pods[0]) {
		t.Errorf("pod %s is Ready though its annotation is refused", pods[0].Name)
	}
	if _, ok := lc.node(pods[0]).kubelet.Sandbox(lc.ns, pods[0].Name); ok {
		t.Errorf("pod %s has a sandbox though its annotation is refused", pods[0].Name)
	}
	eps := map[string]bool{}
	for _, ep := range e2e.Endpoints(t, lc.ns) {
		eps[ep.Name] = true
	}
	if eps[pods[0].Name] || len(eps) != 1 {
		t.Errorf("Endpoints %v: want only the right pod's", keys(eps))
	}
	if p := e2e.FreshState(t, poolA); p.AllocatedIPCount != 0 {
		t.Errorf("%s, the refused pod's IPv4 pool, holds %q", poolA, p.Status.Allocated)
	}
	if p := e2e.FreshState(t, poolB); p.AllocatedIPCount != 1 {
		t.Errorf("%s holds %q, want only the right pod's address", poolB, p.Status.Allocated)
	}
	lc.requireInvariants(poolA, poolB)

	lc.deleteAll(wrong, right)
	lc.requireNothingLeft(poolA, poolB)
}

// A pool whose status.allocated is corrupt while a running pod holds one of its
// addresses: the node's ipamd, restarted, becomes ready anyway, with a RemarkFailed
// Warning on the pool and the underpool_pool_pending_remark_addresses metric; a
// Deployment on a healthy pool runs; one on the corrupt pool is refused naming it (a
// PoolUnusable Warning, underpool_pool_unusable_total). Once the status is repaired the
// pool serves again, and never hands out the address the first pod holds; nor the held
// addresses after a "repair" that forgets them (an empty status, after another restart):
// ipamd re-marks them first.
//
// "zzz" is accepted by the apiserver: the CRD types status.allocated as a plain string.
func TestCorruptPoolIsSkippedAndTheNodeKeepsAllocating(t *testing.T) {
	v4a, _, _ := e2e.NextSubnet()
	v4b, _, _ := e2e.NextSubnet()
	b := strings.TrimSuffix(v4b, "0/24")
	poolA := e2e.NewPool(t, v1.IPPoolSpec{Subnet: v4a}).Name
	poolB := e2e.NewPool(t, v1.IPPoolSpec{Subnet: v4b, IPs: []string{b + "10-" + b + "11"}}).Name
	lc := newLifecycle(t, lifecycleOptions{ipv4Pools: []string{poolA}})
	onB := map[string]string{v1.AnnotationIPPool: `{"ipv4":["` + poolB + `"]}`}
	holder := lc.deployment("holder", 1, onB)
	lc.create(holder)
	var held string
	for name := range lc.waitReady("holder", 1) {
		held = lc.addresses()[name]
	}
	if !strings.HasPrefix(held, b) {
		t.Fatalf("holder got %q, want an address of %s", held, poolB)
	}
	lc.requireInvariants(poolA, poolB)

	lc.setAllocated(poolB, "zzz", 1)
	node := lc.nodes[0]
	health, err := harness.FreeLoopbackAddress()
	if err != nil {
		t.Fatal(err)
	}
	node.ipamd.Options.HealthAddress = health
	if err := node.ipamd.Restart(); err != nil {
		t.Fatalf("ipamd of %s with a corrupt pool: %v", node.name, err)
	}
	lc.eventually("a RemarkFailed Warning on "+poolB, time.Minute, func() (bool, string) {
		for _, e := range e2e.EventsAbout(t, "IPPool", poolB, "RemarkFailed") {
			if e.Type == corev1.EventTypeWarning && strings.Contains(e.Message, "corrupt") {
				return true, ""
			}
		}
		return false, fmt.Sprintf("%d RemarkFailed events", len(e2e.EventsAbout(t, "IPPool", poolB, "RemarkFailed")))
	})
	pending := fmt.Sprintf(`underpool_pool_pending_remark_addresses{pool=%q,reason="corrupt_status"} 1`, poolB)
	lc.eventually("metric "+pending, time.Minute, func() (bool, string) {
		m := scrapeMetrics(node.ipamd.Options.HealthAddress)
		return hasMetricLine(m, pending), grepMetric(m, "underpool_pool_pending_remark_addresses")
	})

	// the node serves the healthy pool
	onA := lc.deployment("on-a", 2, nil)
	lc.create(onA)
	for name, p := range lc.waitReady("on-a", 2) {
		if addr := lc.addresses()[name]; !strings.HasPrefix(addr, strings.TrimSuffix(v4a, "0/24")) {
			t.Errorf("%s got %q, want an address of %s", p.Name, addr, poolA)
		}
	}
	// and refuses the corrupt one, naming it
	onBDep := lc.deployment("on-b", 1, onB)
	lc.create(onBDep)
	lc.eventually("a sandbox of on-b refused naming the corrupt "+poolB, 2*time.Minute, func() (bool, string) {
		return lc.sandboxFailedWith("on-b", "IPPool "+poolB, "corrupt")
	})
	lc.eventually("a PoolUnusable Warning on "+poolB, time.Minute, func() (bool, string) {
		n := len(e2e.EventsAbout(t, "IPPool", poolB, "PoolUnusable"))
		return n > 0, fmt.Sprintf("%d PoolUnusable events", n)
	})
	unusable := fmt.Sprintf(`underpool_pool_unusable_total{pool=%q,reason="corrupt_status"}`, poolB)
	if m := scrapeMetrics(node.ipamd.Options.HealthAddress); !strings.Contains(m, unusable) {
		t.Errorf("no %s in the metrics: %s", unusable, grepMetric(m, "underpool_pool_unusable_total"))
	}
	if n := len(lc.readyPods("on-b")); n != 0 {
		t.Fatalf("%d pods of on-b ready on a corrupt pool", n)
	}
	lc.requireInvariants(poolA) // poolB's status is unreadable on purpose

	// repaired: the offset of the held address, as ipamd writes it
	p := e2e.FreshPool(t, poolB)
	view, err := allocator.NewPool(p.Name, &p.Spec)
	if err != nil {
		t.Fatal(err)
	}
	o, ok := view.Offset(e2e.MustPrefix(t, held).Addr())
	if !ok {
		t.Fatalf("%s is outside %s", held, poolB)
	}
	lc.setAllocated(poolB, fmt.Sprint(o), 1)
	got := ""
	for name := range lc.waitReady("on-b", 1) {
		got = lc.addresses()[name]
	}
	if got == held || !strings.HasPrefix(got, b) {
		t.Fatalf("on-b got %q from the repaired %s, where holder holds %s", got, poolB, held)
	}
	lc.eventually("the pending re-mark metric of "+poolB+" cleared", time.Minute, func() (bool, string) {
		m := scrapeMetrics(node.ipamd.Options.HealthAddress)
		line := fmt.Sprintf(`underpool_pool_pending_remark_addresses{pool=%q`, poolB)
		return m != "" && !strings.Contains(m, line), grepMetric(m, "underpool_pool_pending_remark_addresses")
	})
	lc.requireInvariants(poolA, poolB)
	// both of poolB's addresses are held: a second pod of on-b gets neither
	lc.scale(onBDep, 2)
	lc.eventually("the second pod of on-b refused: "+poolB+" exhausted", 2*time.Minute, func() (bool, string) {
		return lc.sandboxFailedWith("on-b", poolB+": exhausted")
	})
	if n := len(lc.readyPods("on-b")); n != 1 {
		t.Errorf("%d pods of on-b ready, %s has one address for them", n, poolB)
	}
	lc.requireInvariants(poolA, poolB)

	// corrupt again, and "repair" with a valid status that forgets what pods hold: the
	// restarted ipamd re-marks both held addresses before it hands anything out, so the
	// waiting pod is still refused, and the status comes back to what the Endpoints hold
	lc.setAllocated(poolB, "zzz", 2)
	if err := node.ipamd.Restart(); err != nil {
		t.Fatalf("ipamd of %s with a corrupt pool, again: %v", node.name, err)
	}
	pending2 := fmt.Sprintf(`underpool_pool_pending_remark_addresses{pool=%q,reason="corrupt_status"} 2`, poolB)
	lc.eventually("metric "+pending2, time.Minute, func() (bool, string) {
		m := scrapeMetrics(node.ipamd.Options.HealthAddress)
		return hasMetricLine(m, pending2), grepMetric(m, "underpool_pool_pending_remark_addresses")
	})
	before, _ := lc.sandboxFailures("on-b", poolB+": exhausted")
	lc.setAllocated(poolB, "", 0)
	lc.eventually("another refusal of on-b's second pod after the forgetful repair", 2*time.Minute, func() (bool, string) {
		n, last := lc.sandboxFailures("on-b", poolB+": exhausted")
		return n > before, fmt.Sprintf("%d refusals naming exhaustion (%d before); last: %s", n, before, last)
	})
	if n := len(lc.readyPods("on-b")); n != 1 {
		t.Errorf("%d pods of on-b ready after the forgetful repair, %s has one address for them", n, poolB)
	}
	lc.requireInvariants(poolA, poolB)

	lc.deleteAll(holder, onA, onBDep)
	lc.requireNothingLeft(poolA, poolB)
}

// setAllocated writes a pool's state.allocated and allocatedIPCount, as only ipamd
// should: here to corrupt and to repair it.
func (lc *lifecycle) setAllocated(pool, allocated string, count int64) {
	lc.t.Helper()
	e2e.EditState(lc.t, pool, func(st *v1.AllocationState) { st.Allocated, st.AllocatedIPCount = allocated, count })
}

// scrapeMetrics returns ipamd's /metrics text, or "" if it cannot be read.
func scrapeMetrics(addr string) string {
	c := http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get("http://" + addr + "/metrics")
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		return ""
	}
	return string(b)
}

func hasMetricLine(metrics, line string) bool {
	for _, l := range strings.Split(metrics, "\n") {
		if l == line {
			return true
		}
	}
	return false
}

// grepMetric returns the sample lines of one metric, for failure messages.
func grepMetric(metrics, name string) string {
	if metrics == "" {
		return "metrics unreadable"
	}
	var out []string
	for _, l := range strings.Split(metrics, "\n") {
		if strings.HasPrefix(l, name) {
			out = append(out, l)
		}
	}
	if len(out) == 0 {
		return "no " + name + " sample"
	}
	return strings.Join(out, "; ")
}

// An application pool of 10^12 addresses on an IPv6 Subnet: the controller refuses it with
// a BadAnnotation Warning on the Deployment naming the annotation and the limit, carves
// nothing for it, and keeps serving: another workload on the Subnet gets its pool and its
// pods their addresses.
func TestAbsurdIPNumberIsRefused(t *testing.T) {
	_, v6, _ := e2e.NextSubnet()
	gw := strings.TrimSuffix(v6, "/64") + "1"
	subnet := e2e.NewSubnet(t, v1.SubnetSpec{Subnet: v6, Gateway: gw}) // removed last, once its pools are gone
	lc := newLifecycle(t, lifecycleOptions{})
	onSubnet := `{"ipv6":["` + subnet.Name + `"]}`
	huge := lc.deployment("huge", 1, map[string]string{v1.AnnotationSubnet: onSubnet, v1.AnnotationIPNumber: "1000000000000"})
	lc.create(huge)
	lc.eventually("a BadAnnotation Warning on Deployment huge", time.Minute, func() (bool, string) {
		var seen []string
		for _, e := range e2e.EventsAbout(t, "Deployment", "huge", "") {
			if e.InvolvedObject.Namespace != lc.ns {
				continue
			}
			if e.Type == corev1.EventTypeWarning && e.Reason == "BadAnnotation" &&
				containsAll(e.Message, v1.AnnotationIPNumber, "1000000000000", fmt.Sprint(v1.MaxAppPoolIPNumber)) {
				return true, ""
			}
			seen = append(seen, e.Reason+": "+e.Message)
		}
		return false, fmt.Sprintf("events: %q", seen)
	})

	small := lc.deployment("small", 2, map[string]string{v1.AnnotationSubnet: onSubnet})
	lc.create(small)
	smallPool := apppool.Workload{Kind: "Deployment", Namespace: lc.ns, Name: "small"}.PoolName(v1.IPv6)
	e2e.WaitPoolSize(t, smallPool, 2)
	for name := range lc.waitReady("small", 2) {
		if addr := lc.addresses()[name]; !strings.HasPrefix(addr, strings.TrimSuffix(v6, ":/64")) {
			t.Errorf("%s got %q, want an address of %s", name, addr, v6)
		}
	}
	hugePool := apppool.Workload{Kind: "Deployment", Namespace: lc.ns, Name: "huge"}.PoolName(v1.IPv6)
	if err := e2e.Suite.Client.Get(e2e.Ctx(t), client.ObjectKey{Name: hugePool}, &v1.IPPool{}); !e2e.IsNotFound(err) {
		t.Errorf("a pool %s was carved for 10^12 addresses: %v", hugePool, err)
	}
	if n := len(lc.readyPods("huge")); n != 0 {
		t.Errorf("%d pods of huge ready without an application pool", n)
	}
	lc.requireInvariants(smallPool)

	lc.deleteAll(huge, small)
	lc.eventually("application pool "+smallPool+" to go with its workload", 2*time.Minute, func() (bool, string) {
		err := e2e.Suite.Client.Get(e2e.Ctx(t), client.ObjectKey{Name: smallPool}, &v1.IPPool{})
		return e2e.IsNotFound(err), fmt.Sprintf("get: %v", err)
	})
	lc.requireNothingLeft()
}
