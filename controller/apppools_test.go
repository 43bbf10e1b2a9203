package controller

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/events"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/core/allocator"
	"github.com/underpool/underpool/core/apppool"
)

func testScheme(t *testing.T) *runtime.Scheme {
	t.Helper()
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, v1.AddToScheme} {
		if err := add(scheme); err != nil {
			t.Fatal(err)
		}
	}
	return scheme
}

func workloads(n int) []client.Object {
	tmpl := func() appsv1.DeploymentSpec {
		return appsv1.DeploymentSpec{Replicas: ptr.To[int32](2), Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"a": "b"}}}
	}
	objs := []client.Object{&v1.Subnet{ObjectMeta: metav1.ObjectMeta{Name: "s"}, Spec: v1.SubnetSpec{Subnet: "10.0.0.0/24", Gateway: "10.0.0.1"}}}
	ann := map[string]string{v1.AnnotationSubnet: `{"ipv4":["s"]}`, v1.AnnotationIPNumber: "10"}
	for i := range n {
		d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: fmt.Sprintf("d%d", i)}, Spec: tmpl()}
		d.Spec.Template.Annotations = ann
		s := &appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: fmt.Sprintf("s%d", i)},
			Spec: appsv1.StatefulSetSpec{Replicas: ptr.To[int32](2), Selector: tmpl().Selector}}
		s.Spec.Template.Annotations = ann
		objs = append(objs, d, s)
	}
	return objs
}

// requireDisjoint fails when two pools share an address.
func requireDisjoint(t *testing.T, c client.Reader, want int) {
	t.Helper()
	var list v1.IPPoolList
	if err := c.List(context.Background(), &list); err != nil {
		t.Fatal(err)
	}
	if len(list.Items) != want {
		t.Fatalf("%d pools, want %d", len(list.Items), want)
	}
	for i := range list.Items {
		a, _ := allocator.FootprintOf(list.Items[i].Name, &list.Items[i].Spec)
		for j := i + 1; j < len(list.Items); j++ {
			b, _ := allocator.FootprintOf(list.Items[j].Name, &list.Items[j].Spec)
			if addr, shared := allocator.FirstShared(a, b); shared {
				t.Errorf("pools %s and %s share %s", list.Items[i].Name, list.Items[j].Name, addr)
			}
		}
	}
}

// The Deployment and StatefulSet reconcilers carve from one Subnet at the same moment;
// listing is slow, so without one lock across both every carve would see the same free
// addresses. The pools come out disjoint.
func TestConcurrentCarvingYieldsDisjointPools(t *testing.T) {
	slowList := interceptor.Funcs{List: func(ctx context.Context, c client.WithWatch, list client.ObjectList, opts ...client.ListOption) error {
		err := c.List(ctx, list, opts...)
		if _, ok := list.(*v1.IPPoolList); ok {
			time.Sleep(20 * time.Millisecond) // a slow apiserver: the window a second carve would race in
		}
		return err
	}}
	api := fake.NewClientBuilder().WithScheme(testScheme(t)).WithObjects(workloads(3)...).WithInterceptorFuncs(slowList).Build()
	carving := &sync.Mutex{}
	rec := events.NewFakeRecorder(100)
	deployments := &appPools{c: api, api: api, kind: "Deployment", events: rec, carving: carving, changes: testMetrics(t).appPoolChanges}
	statefulsets := &appPools{c: api, api: api, kind: "StatefulSet", events: rec, carving: carving, changes: testMetrics(t).appPoolChanges}
	var wg sync.WaitGroup
	for i := range 3 {
		for _, r := range []*appPools{deployments, statefulsets} {
			name := fmt.Sprintf("d%d", i)
			if r.kind == "StatefulSet" {
				name = fmt.Sprintf("s%d", i)
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, err := r.Reconcile(context.Background(), reconcile.Request{NamespacedName: types.NamespacedName{Namespace: "ns", Name: name}}); err != nil {
					t.Error(err)
				}
			}()
		}
	}
	wg.Wait()
	requireDisjoint(t, api, 6)
}

// The carve reads pools from the API, not from the cache, which lags the controller's own
// creates: a second workload carved right after the first gets other addresses.
func TestCarvingReadsPoolsFromTheAPI(t *testing.T) {
	api := fake.NewClientBuilder().WithScheme(testScheme(t)).WithObjects(workloads(1)...).Build()
	stale := interceptor.NewClient(api, interceptor.Funcs{List: func(ctx context.Context, c client.WithWatch, list client.ObjectList, opts ...client.ListOption) error {
		if _, ok := list.(*v1.IPPoolList); ok {
			return nil // an informer that has not seen any pool yet
		}
		return c.List(ctx, list, opts...)
	}})
	carving := &sync.Mutex{}
	rec := events.NewFakeRecorder(100)
	for _, r := range []*appPools{{c: stale, api: api, kind: "Deployment", events: rec, carving: carving, changes: testMetrics(t).appPoolChanges},
		{c: stale, api: api, kind: "StatefulSet", events: rec, carving: carving, changes: testMetrics(t).appPoolChanges}} {
		name := map[string]string{"Deployment": "d0", "StatefulSet": "s0"}[r.kind]
		if _, err := r.Reconcile(context.Background(), reconcile.Request{NamespacedName: types.NamespacedName{Namespace: "ns", Name: name}}); err != nil {
			t.Fatal(err)
		}
	}
	requireDisjoint(t, api, 2)
}

// Pools that share addresses are reported on both, once, with the first shared address,
// and counted in underpool_pools_overlapping.
func TestOverlapReportWarnsOnBothPools(t *testing.T) {
	a := pool("a", "10.0.0.0/24", "10.0.0.10-10.0.0.20")
	b := pool("b", "10.0.0.0/16", "10.0.0.18-10.0.0.30")
	c := pool("c", "10.0.0.0/24", "10.0.0.40-10.0.0.50")
	broken := pool("broken", "10.1.0.0/28", "10.9.9.9")
	d := pool("d", "10.1.0.0/24", "10.1.0.5")
	api := fake.NewClientBuilder().WithScheme(testScheme(t)).WithObjects(&a, &b, &c, &broken, &d).Build()
	rec := events.NewFakeRecorder(10)
	m := testMetrics(t)
	r := &overlapReport{c: api, events: rec, overlapping: m.poolsOverlapping}
	if _, err := r.Reconcile(context.Background(), reconcile.Request{}); err != nil {
		t.Fatal(err)
	}
	var got []string
	for len(rec.Events) > 0 {
		got = append(got, <-rec.Events)
	}
	want := []string{
		"Warning PoolsOverlap shares addresses with IPPool b, the first 10.0.0.18",
		"Warning PoolsOverlap shares addresses with IPPool a, the first 10.0.0.18",
		"Warning PoolsOverlap shares addresses with IPPool d, the first 10.1.0.5",
		"Warning PoolsOverlap shares addresses with IPPool broken, the first 10.1.0.5",
	}
	if len(got) != len(want) {
		t.Fatalf("events %q", got)
	}
	for _, w := range want {
		found := false
		for _, g := range got {
			found = found || len(g) >= len(w) && g[:len(w)] == w
		}
		if !found {
			t.Errorf("no event %q in %q", w, got)
		}
	}
	if v := testutil.ToFloat64(m.poolsOverlapping); v != 4 {
		t.Errorf("underpool_pools_overlapping = %v, want 4", v)
	}
	if _, err := r.Reconcile(context.Background(), reconcile.Request{}); err != nil || len(rec.Events) != 0 {
		t.Errorf("a second pass repeated the events (%d) or failed: %v", len(rec.Events), err)
	}
}

// An absurd ippool-ip-number is refused at once with a Warning on the workload; no pool is
// carved and the worker is not held.
func TestAbsurdIPNumberWarnsOnTheWorkload(t *testing.T) {
	objs := workloads(1)
	d := objs[1].(*appsv1.Deployment)
	d.Spec.Template.Annotations = map[string]string{v1.AnnotationSubnet: `{"ipv4":["s"]}`, v1.AnnotationIPNumber: "1000000000000"}
	api := fake.NewClientBuilder().WithScheme(testScheme(t)).WithObjects(objs...).Build()
	rec := events.NewFakeRecorder(10)
	r := &appPools{c: api, api: api, kind: "Deployment", events: rec, carving: &sync.Mutex{}, changes: testMetrics(t).appPoolChanges}
	start := time.Now()
	if _, err := r.Reconcile(context.Background(), reconcile.Request{NamespacedName: types.NamespacedName{Namespace: "ns", Name: "d0"}}); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("refusing took %s", d)
	}
	if len(rec.Events) != 1 {
		t.Fatalf("%d events, want one warning", len(rec.Events))
	}
	if e := <-rec.Events; !strings.Contains(e, "Warning BadAnnotation") || !strings.Contains(e, v1.AnnotationIPNumber) || !strings.Contains(e, "65536") {
		t.Errorf("event %q", e)
	}
	requireDisjoint(t, api, 0)
}

// A Deployment deleted and made again under the same name while its pool still
// terminates (its old pods hold addresses, so the pool protection finalizer keeps it):
// the new Deployment is told why it waits and looked at again, the pool's deletion
// enqueues it at once, and it then gets a fresh pool under the same, stable name.
func TestRecreatedWorkloadGetsItsPoolOnceTheOldOneIsGone(t *testing.T) {
	ctx := context.Background()
	w := apppool.Workload{Kind: "Deployment", Namespace: "ns", Name: "d0"}
	name := w.PoolName(v1.IPv4)
	old := &v1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: name, UID: "old-incarnation", Finalizers: []string{PoolProtection},
		DeletionTimestamp: &metav1.Time{Time: time.Now()},
		Labels:            map[string]string{apppool.LabelOwnerHash: w.Hash()}, Annotations: map[string]string{apppool.AnnotationOwner: w.String()}},
		Spec: v1.IPPoolSpec{Subnet: "10.0.0.0/24", IPs: []string{"10.0.0.2-10.0.0.11"}}}
	api := fake.NewClientBuilder().WithScheme(testScheme(t)).WithObjects(append(workloads(1), old)...).Build()
	rec := events.NewFakeRecorder(10)
	r := &appPools{c: api, api: api, kind: "Deployment", events: rec, carving: &sync.Mutex{}, changes: testMetrics(t).appPoolChanges}
	req := reconcile.Request{NamespacedName: types.NamespacedName{Namespace: "ns", Name: "d0"}}

	res, err := r.Reconcile(ctx, req)
	if err != nil || res.RequeueAfter <= 0 {
		t.Fatalf("while the old pool terminates: %+v, %v; want a recheck", res, err)
	}
	if e := <-rec.Events; !strings.Contains(e, "Normal AppPoolTerminating") || !strings.Contains(e, name) {
		t.Errorf("event %q", e)
	}

	// the old pods go, the finalizer is lifted, the pool is gone: its delete event
	// enqueues its workload, and only for the reconciler of that kind
	got := &v1.IPPool{}
	if err := api.Get(ctx, client.ObjectKey{Name: name}, got); err != nil {
		t.Fatal(err)
	}
	got.Finalizers = nil
	if err := api.Update(ctx, got); err != nil {
		t.Fatal(err)
	}
	if err := api.Get(ctx, client.ObjectKey{Name: name}, got); !apierrors.IsNotFound(err) {
		t.Fatalf("the old pool is still there: %v", err)
	}
	if !poolDeletes.Delete(event.DeleteEvent{Object: old}) || poolDeletes.Update(event.UpdateEvent{ObjectOld: old, ObjectNew: old}) {
		t.Error("only pool deletions may enqueue workloads")
	}
	queue := &fakeQueue{}
	enqueueOwner("Deployment").Delete(ctx, event.DeleteEvent{Object: old}, queue)
	enqueueOwner("StatefulSet").Delete(ctx, event.DeleteEvent{Object: old}, queue)
	if len(queue.added) != 1 || queue.added[0] != req {
		t.Fatalf("the pool's deletion enqueued %v, want only %v", queue.added, req)
	}

	if res, err = r.Reconcile(ctx, req); err != nil || res.RequeueAfter != 0 {
		t.Fatalf("once the old pool is gone: %+v, %v", res, err)
	}
	if err := api.Get(ctx, client.ObjectKey{Name: name}, got); err != nil || got.DeletionTimestamp != nil || len(got.Spec.IPs) == 0 {
		t.Fatalf("no fresh pool %s: %v %+v", name, err, got.ObjectMeta)
	}
}

// fakeQueue records what an event handler adds.
type fakeQueue struct {
	workqueue.TypedRateLimitingInterface[reconcile.Request]
	added []reconcile.Request
}

func (q *fakeQueue) Add(r reconcile.Request) { q.added = append(q.added, r) }
