package orphans

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	v1 "github.com/underpool/underpool/api/v1"
)

func scheme(t *testing.T) *runtime.Scheme {
	t.Helper()
	s := runtime.NewScheme()
	if err := v1.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	return s
}

func poolObj(name, uid string) *v1.IPPool {
	return &v1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: name, UID: types.UID(uid)}, Spec: v1.IPPoolSpec{Subnet: "10.250.1.0/24"}}
}

// allocObj is the PoolAllocation of pool holding allocated.
func allocObj(pool *v1.IPPool, allocated string) *v1.PoolAllocation {
	a := v1.AllocationOf(pool)
	a.State.Allocated = allocated
	return a
}

// poolWith is a pool of 10.250.1.0/24 and its PoolAllocation holding allocated.
func poolWith(name, uid, allocated string) []client.Object {
	p := poolObj(name, uid)
	return []client.Object{p, allocObj(p, allocated)}
}

// copies deep-copies objects, for a second client (a cache) that must not share them.
func copies(objs ...client.Object) []client.Object {
	out := make([]client.Object, len(objs))
	for i, o := range objs {
		out[i] = o.DeepCopyObject().(client.Object)
	}
	return out
}

// throughPhases sweeps at from and then every hour for n more sweeps: each sweep is a
// grace period and a commit window after the one before, so an orphan is marked at the
// second, confirmed at the fourth and freed at the sixth.
func throughPhases(t *testing.T, ctx context.Context, s *Sweeper, from time.Time, n int) error {
	t.Helper()
	for i := 0; i <= n; i++ {
		if _, err := s.Sweep(ctx, from.Add(time.Duration(i)*time.Hour), time.Minute); err != nil {
			return err
		}
	}
	return nil
}

// sweepsToFree is how many sweeps after the first one sees an orphan free it.
const sweepsToFree = 5

func stateOf(t *testing.T, c client.Reader, name string) v1.AllocationState {
	t.Helper()
	got := &v1.PoolAllocation{}
	if err := c.Get(context.Background(), client.ObjectKey{Name: name}, got); err != nil {
		t.Fatal(err)
	}
	return got.State
}

func reclaiming(t *testing.T, c client.Reader, name string) string {
	t.Helper()
	return stateOf(t, c, name).Reclaiming
}

func allocated(t *testing.T, c client.Reader, name string) string {
	t.Helper()
	return stateOf(t, c, name).Allocated
}

// An address the informer shows unheld but the API shows held (an Endpoint written a
// moment ago, not yet in the cache) is never freed; one unheld in the API too is, once it
// stayed unheld for the grace period.
func TestSweepConfirmsWithTheAPIBeforeFreeing(t *testing.T) {
	pool := poolWith("p", "uid-p", "5-6")
	held := &v1.Endpoint{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "a"}, Status: v1.EndpointStatus{
		Interfaces: []v1.EndpointInterface{{ContainerID: "c", Interface: "net1", IPs: []v1.EndpointIP{{Address: "10.250.1.5/24", Pool: "p"}}}}}}
	api := fake.NewClientBuilder().WithScheme(scheme(t)).WithObjects(append(pool, held)...).Build()
	cache := fake.NewClientBuilder().WithScheme(scheme(t)).WithObjects(copies(pool...)...).Build() // lags: no Endpoint yet
	s := &Sweeper{Cache: cache, API: api, Writer: api, Log: zap.NewNop()}
	if err := throughPhases(t, context.Background(), s, time.Now(), sweepsToFree); err != nil {
		t.Fatal(err)
	}
	if got := allocated(t, api, "p"); got != "5" {
		t.Fatalf("pool allocated = %q, want only the held 10.250.1.5 (offset 5) left", got)
	}
}

// The sweeper's right to free is its lease: when the lease is lost mid-sweep (its context
// ends), it frees nothing more from the snapshot it was working on, whether the loss comes
// before its first write or between two pools' writes.
func TestSweepStopsWhenItsLeaseIsLost(t *testing.T) {
	for _, tc := range []struct {
		name string
		// lose reports whether the lease is lost at this call
		lose     func(pool client.Object, isList bool) bool
		wantLeft map[string]string
	}{
		{"while confirming with the API", func(_ client.Object, isList bool) bool { return isList },
			map[string]string{"a": "5", "b": "7"}},
		{"while reading the first pool fresh", func(obj client.Object, _ bool) bool { return obj != nil && obj.GetName() == "a" },
			map[string]string{"a": "5", "b": "7"}},
		{"after the first pool's write", func(obj client.Object, _ bool) bool { return obj != nil && obj.GetName() == "b" },
			map[string]string{"a": "", "b": "7"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, loseLease := context.WithCancel(context.Background())
			defer loseLease()
			armed := false
			objs := append(poolWith("a", "uid-a", "5"), poolWith("b", "uid-b", "7")...)
			api := fake.NewClientBuilder().WithScheme(scheme(t)).WithObjects(objs...).
				WithInterceptorFuncs(interceptor.Funcs{
					List: func(ctx context.Context, c client.WithWatch, list client.ObjectList, opts ...client.ListOption) error {
						if _, ok := list.(*v1.EndpointList); ok && armed && tc.lose(nil, true) {
							loseLease()
						}
						return c.List(ctx, list, opts...)
					},
					Get: func(ctx context.Context, c client.WithWatch, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
						err := c.Get(ctx, key, obj, opts...)
						if armed && tc.lose(obj, false) {
							loseLease()
						}
						return err
					},
				}).Build()
			s := &Sweeper{Cache: api, API: api, Writer: api, Log: zap.NewNop()}
			now := time.Now()
			if err := throughPhases(t, ctx, s, now, sweepsToFree-1); err != nil {
				t.Fatal(err)
			}
			armed = true
			if _, err := s.Sweep(ctx, now.Add(sweepsToFree*time.Hour), time.Minute); err == nil {
				t.Fatal("a sweep whose lease was lost reported success")
			}
			for name, want := range tc.wantLeft {
				if got := allocated(t, api, name); got != want {
					t.Errorf("pool %s allocated = %q, want %q", name, got, want)
				}
			}
		})
	}
}

// The sweeper tracks allocations, not addresses: an address seen free (in any allocation
// state the informer delivers, or at a sweep) or held in between starts a new clock when it is
// unheld again, and a pool made again under the same name (a new UID) starts afresh.
func TestSweepTracksAllocationsNotAddresses(t *testing.T) {
	now := time.Now()
	for _, tc := range []struct {
		name    string
		between func(t *testing.T, s *Sweeper, api client.Client)
	}{
		{"freed and handed out again between sweeps", func(t *testing.T, s *Sweeper, api client.Client) {
			p := poolObj("p", "uid-p")
			s.Observe(p, allocObj(p, ""))  // the rollback of a failed allocation
			s.Observe(p, allocObj(p, "5")) // the next allocation, its Endpoint not written yet
		}},
		{"seen held at a sweep in between", func(t *testing.T, s *Sweeper, api client.Client) {
			ep := &v1.Endpoint{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "a"}, Status: v1.EndpointStatus{
				Interfaces: []v1.EndpointInterface{{ContainerID: "c", Interface: "net1", IPs: []v1.EndpointIP{{Address: "10.250.1.5/24", Pool: "p"}}}}}}
			if err := api.Create(context.Background(), ep); err != nil {
				t.Fatal(err)
			}
			if _, err := s.Sweep(context.Background(), now.Add(30*time.Second), time.Minute); err != nil {
				t.Fatal(err)
			}
			if err := api.Delete(context.Background(), ep); err != nil {
				t.Fatal(err)
			}
		}},
		{"the pool made again under the same name", func(t *testing.T, s *Sweeper, api client.Client) {
			for _, o := range poolWith("p", "uid-p", "") {
				if err := api.Delete(context.Background(), o); err != nil {
					t.Fatal(err)
				}
			}
			s.Forget("uid-p")
			for _, o := range poolWith("p", "uid-p2", "5") {
				if err := api.Create(context.Background(), o); err != nil {
					t.Fatal(err)
				}
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			api := fake.NewClientBuilder().WithScheme(scheme(t)).WithObjects(poolWith("p", "uid-p", "5")...).Build()
			s := &Sweeper{Cache: api, API: api, Writer: api, Log: zap.NewNop()}
			if _, err := s.Sweep(context.Background(), now, time.Minute); err != nil {
				t.Fatal(err)
			}
			tc.between(t, s, api)
			// past the first sighting's grace, but the allocation unheld now is a new one
			if _, err := s.Sweep(context.Background(), now.Add(time.Hour), time.Minute); err != nil {
				t.Fatal(err)
			}
			if got := reclaiming(t, api, "p"); got != "" {
				t.Fatalf("a new allocation was marked on an old one's clock: reclaiming = %q", got)
			}
			if err := throughPhases(t, context.Background(), s, now.Add(2*time.Hour), sweepsToFree-2); err != nil {
				t.Fatal(err)
			}
			if got := allocated(t, api, "p"); got != "5" {
				t.Fatalf("a new allocation was freed on an old one's clock: allocated = %q", got)
			}
			if _, err := s.Sweep(context.Background(), now.Add((sweepsToFree+1)*time.Hour), time.Minute); err != nil {
				t.Fatal(err)
			}
			if got := allocated(t, api, "p"); got != "" {
				t.Fatalf("the orphan was not freed after its own grace: allocated = %q", got)
			}
		})
	}
}

// pagedReader serves Endpoint lists the way the apiserver does with a limit: one item per
// page here, each page pointing to the next, and records the limits asked for.
type pagedReader struct {
	client.Reader
	limits []int64
}

func (p *pagedReader) List(ctx context.Context, list client.ObjectList, opts ...client.ListOption) error {
	o := (&client.ListOptions{}).ApplyOptions(opts)
	p.limits = append(p.limits, o.Limit)
	if err := p.Reader.List(ctx, list, opts...); err != nil {
		return err
	}
	eps, ok := list.(*v1.EndpointList)
	if !ok || o.Limit == 0 {
		return nil
	}
	from := 0
	if o.Continue != "" {
		if _, err := fmt.Sscan(o.Continue, &from); err != nil {
			return err
		}
	}
	all := eps.Items
	eps.Items, eps.Continue = all[from:from+1], ""
	if from+1 < len(all) {
		eps.Continue = fmt.Sprint(from + 1)
	}
	return nil
}

// The uncached confirmation reads the cluster's Endpoints in bounded pages, and an address
// held by an Endpoint on a later page is still seen held.
func TestSweepConfirmsPageByPage(t *testing.T) {
	pool := poolWith("p", "uid-p", "5-7")
	objs := append([]client.Object(nil), pool...)
	for i, name := range []string{"a", "b", "c"} {
		objs = append(objs, &v1.Endpoint{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name}, Status: v1.EndpointStatus{
			Interfaces: []v1.EndpointInterface{{ContainerID: name, Interface: "net1",
				IPs: []v1.EndpointIP{{Address: fmt.Sprintf("10.250.1.%d/24", 5+i), Pool: "p"}}}}}})
	}
	api := fake.NewClientBuilder().WithScheme(scheme(t)).WithObjects(objs...).Build()
	cache := fake.NewClientBuilder().WithScheme(scheme(t)).WithObjects(copies(pool...)...).Build() // lags: no Endpoint yet
	paged := &pagedReader{Reader: api}
	s := &Sweeper{Cache: cache, API: paged, Writer: api, Log: zap.NewNop()}
	if err := throughPhases(t, context.Background(), s, time.Now(), 1); err != nil {
		t.Fatal(err)
	}
	if got := allocated(t, api, "p"); got != "5-7" {
		t.Fatalf("pool allocated = %q, want 5-7: every address is held by an Endpoint on some page", got)
	}
	if len(paged.limits) != 3 {
		t.Fatalf("%d list calls, want 3 pages", len(paged.limits))
	}
	for _, l := range paged.limits {
		if l <= 0 || l > listPage {
			t.Fatalf("list limits %v: want every page bounded by %d", paged.limits, listPage)
		}
	}
}

// A pool whose state.allocated runs past its subnet ("1-400000" or "0-4294967295" on a
// /24) is corrupt: the sweeper tracks none of its offsets (it would track 400,000, or run
// out of memory on 2^32) and writes nothing to it, while it still frees the orphans of
// every other pool.
func TestSweepSkipsAPoolWhoseStateIsPastItsSubnet(t *testing.T) {
	for _, corrupt := range []string{"1-400000", "0-4294967295"} {
		t.Run(corrupt, func(t *testing.T) {
			bad := poolObj("bad", "uid-bad")
			badState := allocObj(bad, corrupt)
			api := fake.NewClientBuilder().WithScheme(scheme(t)).WithObjects(append(poolWith("good", "uid-good", "5"), bad, badState)...).Build()
			unheld := prometheus.NewGauge(prometheus.GaugeOpts{Name: "unheld"})
			s := &Sweeper{Cache: api, API: api, Writer: api, Log: zap.NewNop(), Unheld: unheld}
			now := time.Now()
			for i := range sweepsToFree + 1 {
				at := now.Add(time.Duration(i) * time.Hour)
				s.Observe(bad, badState)
				if _, err := s.Sweep(context.Background(), at, time.Minute); err != nil {
					t.Fatal(err)
				}
				if n := testutil.ToFloat64(unheld); at == now && n != 1 {
					t.Fatalf("%v allocations tracked as unheld, want the good pool's one", n)
				}
			}
			if got := allocated(t, api, "good"); got != "" {
				t.Errorf("the good pool's orphan was not freed: allocated %q", got)
			}
			if got := allocated(t, api, "bad"); got != corrupt {
				t.Errorf("the corrupt pool was written: allocated %q, was %q", got, corrupt)
			}
		})
	}
}

// A pool has nothing to sweep while it has no PoolAllocation, and a PoolAllocation left by
// an earlier pool of the same name (another PoolUID) is none of its state: the sweeper
// neither marks nor frees in it, however long its addresses stay unheld.
func TestSweepLeavesAStateOfAnotherPoolUIDAlone(t *testing.T) {
	earlier := poolObj("p", "uid-earlier")
	leftover := allocObj(earlier, "5-6")
	api := fake.NewClientBuilder().WithScheme(scheme(t)).WithObjects(poolObj("p", "uid-now"), leftover, poolObj("q", "uid-q")).Build()
	s := &Sweeper{Cache: api, API: api, Writer: api, Log: zap.NewNop()}
	if err := throughPhases(t, context.Background(), s, time.Now(), sweepsToFree+1); err != nil {
		t.Fatal(err)
	}
	if got := stateOf(t, api, "p"); got.Allocated != "5-6" || got.Reclaiming != "" {
		t.Fatalf("an earlier pool's state was swept: %+v", got)
	}
	if err := api.Get(context.Background(), client.ObjectKey{Name: "q"}, &v1.PoolAllocation{}); err == nil {
		t.Fatal("a PoolAllocation was made for a pool with nothing allocated")
	}
}
