package lifecycle

import (
	"context"
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/controller/webhook"
	"github.com/underpool/underpool/core/allocator"
	"github.com/underpool/underpool/core/apppool"
	"github.com/underpool/underpool/tests/e2e"
)

// Conflict prevention end to end (DESIGN.md invariant 1, README "conflict prevention" and
// "fixed-IP application pools"): pods made by the real Deployment and StatefulSet
// controllers, sandboxes by the kubelet stand-ins through multus.

// Two IPPools sharing addresses that both got written: created at the same moment, both
// may pass the webhook's check-then-act, and so may pools applied while no webhook runs
// (before the controller is installed). Then ipamd hands out none of the shared addresses
// from either pool (each Deployment gets only its pool's own part, however many replicas
// it wants), the controller reports the overlap with a PoolsOverlap Warning on both pools,
// and once one pool goes the other serves the addresses it no longer shares. The race is
// not left to chance: the two pools are created together while the IPPool webhook is out
// of the configuration, so what ipamd and the controller do is proven on every run (the
// webhook's own refusal is TestWebhookRejectsConflictingPools's).
func TestOverlappingPoolsThatBothGotInNeverShareAnAddress(t *testing.T) {
	_, _, third := e2e.NextSubnet()
	base := fmt.Sprintf("10.250.%d.", third)
	subnet := base + "0/24"
	// A: .1-.8, B: .5-.12; they share .5-.8
	poolA := &v1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: "ovl-a-" + rand.String(5)},
		Spec: v1.IPPoolSpec{Subnet: subnet, IPs: []string{base + "1-" + base + "8"}}}
	poolB := &v1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: "ovl-b-" + rand.String(5)},
		Spec: v1.IPPoolSpec{Subnet: subnet, IPs: []string{base + "5-" + base + "12"}}}
	withoutPoolWebhook(t, subnet, base, func() {
		for i, err := range createTogether(t, poolA, poolB) {
			if err != nil {
				t.Fatalf("creating overlapping pool %d with the IPPool webhook out: %v", i, err)
			}
		}
	})
	for _, p := range []*v1.IPPool{poolA, poolB} {
		t.Cleanup(func() { _ = e2e.Suite.Client.Delete(context.Background(), p) })
	}

	lc := newLifecycle(t, lifecycleOptions{nodes: 2, ipv4Pools: []string{poolA.Name}})
	lc.addNetwork("underlay-b", lc.uplink("eth2"), []string{poolB.Name})
	depA := lc.deployment("on-a", 6, nil)
	depB := lc.deployment("on-b", 6, map[string]string{"k8s.v1.cni.cncf.io/networks": "underlay-b"})
	lc.create(depA)
	lc.create(depB)

	// each Deployment wants 6, its pool has 4 addresses it shares with no other pool
	shared := func(addr string) bool {
		a := e2e.MustPrefix(t, addr).Addr()
		lo, hi := netip.MustParseAddr(base+"5"), netip.MustParseAddr(base+"8")
		return a.Compare(lo) >= 0 && a.Compare(hi) <= 0
	}
	lc.eventually("4 pods of each Deployment running, the others refused as exhausted", 2*time.Minute, func() (bool, string) {
		a, b := len(lc.readyPods("on-a")), len(lc.readyPods("on-b"))
		failedA, _ := lc.sandboxFailedWith("on-a", poolA.Name, "exhausted")
		failedB, _ := lc.sandboxFailedWith("on-b", poolB.Name, "exhausted")
		return a == 4 && b == 4 && failedA && failedB,
			fmt.Sprintf("on-a %d ready (a sandbox refused: %t), on-b %d ready (a sandbox refused: %t)", a, failedA, b, failedB)
	})
	lc.requireInvariants(poolA.Name, poolB.Name)
	for _, ep := range e2e.Endpoints(t, lc.ns) {
		for _, itf := range ep.Status.Interfaces {
			for _, ip := range itf.IPs {
				if shared(ip.Address) {
					t.Errorf("%s got %s from %s: an address both pools could hand out", ep.Name, ip.Address, ip.Pool)
				}
			}
		}
	}
	if n := len(lc.readyPods("on-a")) + len(lc.readyPods("on-b")); n > 8 {
		t.Fatalf("%d pods running on the 8 addresses the pools do not share", n)
	}
	for _, pair := range [][2]string{{poolA.Name, poolB.Name}, {poolB.Name, poolA.Name}} {
		lc.eventually("a PoolsOverlap event on "+pair[0], time.Minute, func() (bool, string) {
			for _, e := range e2e.EventsAbout(t, "IPPool", pair[0], "PoolsOverlap") {
				if e.Type == corev1.EventTypeWarning && strings.Contains(e.Message, "IPPool "+pair[1]) {
					return true, ""
				}
			}
			var seen []string
			for _, e := range e2e.EventsAbout(t, "IPPool", pair[0], "") {
				seen = append(seen, e.Reason+": "+e.Message)
			}
			return false, fmt.Sprintf("events on %s: %q", pair[0], seen)
		})
	}

	// separate them: A goes (once its pods are gone), and B alone serves .5-.8, so on-b
	// gets all 6
	lc.scale(depA, 0)
	lc.eventually("on-a scaled to 0", 2*time.Minute, func() (bool, string) {
		n := len(lc.pods("on-a"))
		return n == 0, fmt.Sprintf("%d pods of on-a left", n)
	})
	lc.requireInvariants(poolA.Name, poolB.Name)
	if err := e2e.Suite.Client.Delete(e2e.Ctx(t), poolA); err != nil {
		t.Fatal(err)
	}
	lc.eventually(poolA.Name+" gone", time.Minute, func() (bool, string) {
		err := e2e.Suite.Client.Get(e2e.Ctx(t), client.ObjectKeyFromObject(poolA), &v1.IPPool{})
		return e2e.IsNotFound(err), fmt.Sprintf("get: %v", err)
	})
	lc.waitReady("on-b", 6)
	lc.requireInvariants(poolB.Name)
	lc.deleteAll(depA, depB)
	lc.requireNothingLeft(poolB.Name)
}

// createTogether creates the objects from one goroutine each, released at the same moment,
// and returns each create's error.
func createTogether(t *testing.T, objs ...client.Object) []error {
	t.Helper()
	errs := make([]error, len(objs))
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i, obj := range objs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			errs[i] = e2e.Suite.Client.Create(e2e.Ctx(t), obj)
		}()
	}
	close(start)
	wg.Wait()
	return errs
}

// Three workloads on one Subnet, a Deployment, another Deployment and a StatefulSet,
// created at the same moment: the controller carves their application pools one at a
// time from an uncached list, so the pools share no address; every pod gets an address
// from its own workload's pool; deleting the workloads lets the pools go, and nothing is
// left.
func TestApplicationPoolsOfTwoWorkloadsOnOneSubnetAreDisjoint(t *testing.T) {
	v4, _, _ := e2e.NextSubnet()
	b := strings.TrimSuffix(v4, "0/24")
	subnet := e2e.NewSubnet(t, v1.SubnetSpec{Subnet: v4, Gateway: b + "1"}) // removed last, once its pools are gone
	lc := newLifecycle(t, lifecycleOptions{nodes: 2})
	ann := func(extra string) map[string]string {
		m := map[string]string{v1.AnnotationSubnet: `{"ipv4":["` + subnet.Name + `"]}`}
		if extra != "" {
			m[v1.AnnotationIPNumber] = extra
		}
		return m
	}
	web := lc.deployment("web", 3, ann("+1"))
	api := lc.deployment("api", 2, ann(""))
	db := lc.statefulSet("db", 3)
	db.Spec.PodManagementPolicy = appsv1.ParallelPodManagement
	db.Spec.Template.Annotations[v1.AnnotationSubnet] = ann("")[v1.AnnotationSubnet]
	for i, err := range createTogether(t, web, api, db) {
		if err != nil {
			t.Fatalf("creating workload %d: %v", i, err)
		}
	}
	want := map[string]struct { // by pool name
		app      string
		replicas int
		size     uint64
	}{
		apppool.Workload{Kind: "Deployment", Namespace: lc.ns, Name: "web"}.PoolName(v1.IPv4): {"web", 3, 4},
		apppool.Workload{Kind: "Deployment", Namespace: lc.ns, Name: "api"}.PoolName(v1.IPv4): {"api", 2, 2},
		apppool.Workload{Kind: "StatefulSet", Namespace: lc.ns, Name: "db"}.PoolName(v1.IPv4): {"db", 3, 3},
	}
	var names []string
	for name := range want {
		names = append(names, name)
	}
	sort.Strings(names)

	// the pools, found by listing IPPools carved from the Subnet
	var views map[string]*allocator.PoolView
	lc.eventually("three application pools carved from "+subnet.Name, time.Minute, func() (bool, string) {
		var list v1.IPPoolList
		if err := e2e.Suite.Client.List(e2e.Ctx(t), &list, client.MatchingLabels{apppool.LabelSubnet: subnet.Name}); err != nil {
			return false, err.Error()
		}
		views = map[string]*allocator.PoolView{}
		var got []string
		for i := range list.Items {
			p := &list.Items[i]
			view, err := allocator.NewPool(p.Name, &p.Spec)
			if err != nil {
				t.Fatalf("application pool %s does not parse: %v", p.Name, err)
			}
			views[p.Name] = view
			got = append(got, fmt.Sprintf("%s:%d", p.Name, view.Usable.Count()))
		}
		for name, w := range want {
			if v := views[name]; v == nil || v.Usable.Count() != w.size {
				return false, "pools: " + strings.Join(got, " ")
			}
		}
		return len(views) == len(want), "pools: " + strings.Join(got, " ")
	})
	for i, x := range names {
		for _, y := range names[i+1:] {
			if common := views[x].Usable.Count() - views[x].Usable.Subtract(views[y].Usable).Count(); common != 0 {
				t.Errorf("application pools %s (%v) and %s (%v) share %d addresses",
					x, e2e.FreshPool(t, x).Spec.IPs, y, e2e.FreshPool(t, y).Spec.IPs, common)
			}
		}
	}

	pods := map[string]corev1.Pod{}
	for _, name := range names {
		for podName, p := range lc.waitReady(want[name].app, want[name].replicas) {
			pods[podName] = p
		}
	}
	for _, ep := range e2e.Endpoints(t, lc.ns) {
		p, ok := pods[ep.Name]
		if !ok {
			t.Errorf("Endpoint %s of no running pod", ep.Name)
			continue
		}
		pool := ""
		for name, w := range want {
			if w.app == p.Labels["app"] {
				pool = name
			}
		}
		for _, itf := range ep.Status.Interfaces {
			for _, ip := range itf.IPs {
				if ip.Pool != pool {
					t.Errorf("%s got %s from %s, not from its workload's pool %s", ep.Name, ip.Address, ip.Pool, pool)
				} else if o, ok := views[pool].Offset(e2e.MustPrefix(t, ip.Address).Addr()); !ok || !views[pool].Usable.Contains(o) {
					t.Errorf("%s got %s, outside its pool %s (%v)", ep.Name, ip.Address, pool, e2e.FreshPool(t, pool).Spec.IPs)
				}
			}
		}
	}
	if got := len(lc.addresses()); got != len(pods) {
		t.Errorf("%d pods hold an address on net1, %d run", got, len(pods))
	}
	lc.requireInvariants(names...)

	lc.deleteAll(web, api, db)
	for _, name := range names {
		lc.eventually("application pool "+name+" to go with its workload", 2*time.Minute, func() (bool, string) {
			p := &v1.IPPool{}
			err := e2e.Suite.Client.Get(e2e.Ctx(t), client.ObjectKey{Name: name}, p)
			return e2e.IsNotFound(err), fmt.Sprintf("get: %v, holds %d", err, p.Status.AllocatedIPCount)
		})
	}
	lc.requireNothingLeft()
}

// withoutPoolWebhook runs create with the IPPool webhook taken out of the webhook
// configuration, as a cluster is before the controller is installed, and puts it back.
// The apiserver applies a configuration change a moment later: each way is waited for by
// asking, in a dry run, whether a pool overlapping a sentinel pool of subnet is admitted.
func withoutPoolWebhook(t *testing.T, subnet, base string, create func()) {
	t.Helper()
	sentinel := &v1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: "ovl-sentinel-" + rand.String(5)},
		Spec: v1.IPPoolSpec{Subnet: subnet, IPs: []string{base + "200-" + base + "201"}}}
	if err := e2e.Suite.Client.Create(e2e.Ctx(t), sentinel); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e2e.Suite.Client.Delete(context.Background(), sentinel) })
	admitted := func() bool {
		probe := &v1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: "ovl-probe-" + rand.String(5)},
			Spec: v1.IPPoolSpec{Subnet: subnet, IPs: []string{base + "201-" + base + "202"}}}
		return e2e.Suite.Client.Create(e2e.Ctx(t), probe, client.DryRunAll) == nil
	}
	if admitted() {
		t.Fatal("a pool overlapping the sentinel was admitted with the IPPool webhook in place")
	}
	cfg := &admissionregistrationv1.ValidatingWebhookConfiguration{}
	if err := e2e.Suite.Client.Get(e2e.Ctx(t), client.ObjectKey{Name: webhook.ConfigName}, cfg); err != nil {
		t.Fatal(err)
	}
	saved := cfg.Webhooks
	var others []admissionregistrationv1.ValidatingWebhook
	for _, h := range saved {
		if h.Name != "ippools.underpool.io" {
			others = append(others, h)
		}
	}
	setHooks(t, others)
	restored := false
	restore := func() {
		if !restored {
			restored = true
			setHooks(t, saved)
		}
	}
	t.Cleanup(restore)
	e2e.Eventually(t, "the apiserver to stop calling the IPPool webhook", 30*time.Second, func() (bool, string) {
		return admitted(), "an overlapping pool is still refused"
	})
	create()
	restore()
	e2e.Eventually(t, "the apiserver to call the IPPool webhook again", 30*time.Second, func() (bool, string) {
		return !admitted(), "an overlapping pool is still admitted"
	})
}

func setHooks(t *testing.T, hooks []admissionregistrationv1.ValidatingWebhook) {
	t.Helper()
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cfg := &admissionregistrationv1.ValidatingWebhookConfiguration{}
		if err := e2e.Suite.Client.Get(e2e.Ctx(t), client.ObjectKey{Name: webhook.ConfigName}, cfg); err != nil {
			return err
		}
		cfg.Webhooks = hooks
		return e2e.Suite.Client.Update(e2e.Ctx(t), cfg)
	})
	if err != nil {
		t.Fatalf("updating the webhook configuration: %v", err)
	}
}
