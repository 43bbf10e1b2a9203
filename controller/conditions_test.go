package controller

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	v1 "github.com/underpool/underpool/api/v1"
)

// heldPool is a pool and the allocation state of its PoolAllocation.
type heldPool struct {
	pool  v1.IPPool
	state v1.AllocationState
}

// poolOf builds a pool of the given subnet handing out ips, its state holding allocated
// offsets.
func poolOf(name, subnet, ips, allocated string) heldPool {
	p := v1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: name, UID: types.UID("uid-" + name)}, Spec: v1.IPPoolSpec{Subnet: subnet}}
	if ips != "" {
		p.Spec.IPs = []string{ips}
	}
	return heldPool{pool: p, state: v1.AllocationState{Allocated: allocated}}
}

// split returns the pools and their states as the reconciler reads them.
func split(held []heldPool) ([]v1.IPPool, poolStates) {
	pools, states := make([]v1.IPPool, len(held)), poolStates{}
	for i, h := range held {
		pools[i], states[h.pool.Name] = h.pool, h.state
	}
	return pools, states
}

// objects are the pool and its PoolAllocation, for a client.
func (h heldPool) objects() []client.Object {
	p := h.pool.DeepCopy()
	a := v1.AllocationOf(p)
	a.State = h.state
	return []client.Object{p, a}
}

func reservedOf(ips ...string) v1.ReservedIP {
	return v1.ReservedIP{ObjectMeta: metav1.ObjectMeta{Name: "r"}, Spec: v1.ReservedIPSpec{IPs: ips}}
}

// Each condition, for each reason it can have: the pool under test is always "p".
func TestPoolConditions(t *testing.T) {
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	quarantined := func(p heldPool, ip string, until time.Time) heldPool {
		p.state.Quarantined = append(p.state.Quarantined, v1.QuarantinedIP{IP: ip, Until: metav1.NewTime(until)})
		return p
	}
	for _, c := range []struct {
		name     string
		pools    []heldPool
		reserved []v1.ReservedIP
		// want maps a condition type to its status, reason and words its message must hold
		want        map[string][3]string
		wantChanges time.Time
	}{
		{name: "free addresses", pools: []heldPool{poolOf("p", "10.9.0.0/24", "10.9.0.10-10.9.0.12", "10-11")},
			want: map[string][3]string{
				v1.PoolExhausted:   {"False", ReasonAddressesFree, "addresses to hand out"},
				v1.PoolOverlapping: {"False", ReasonNoOverlap, "no address"},
				v1.PoolInvalid:     {"False", ReasonValid, "parse"}}},
		{name: "exhausted by allocation", pools: []heldPool{poolOf("p", "10.9.0.0/24", "10.9.0.10-10.9.0.12", "10-12")},
			want: map[string][3]string{v1.PoolExhausted: {"True", ReasonNoFreeAddress, "the 3 usable addresses is taken: 3 allocated, 0 quarantined, 0 reserved"}}},
		{name: "exhausted with a reserved address", pools: []heldPool{poolOf("p", "10.9.0.0/24", "10.9.0.10-10.9.0.12", "10-11")},
			reserved: []v1.ReservedIP{reservedOf("10.9.0.12")},
			want:     map[string][3]string{v1.PoolExhausted: {"True", ReasonNoFreeAddress, "2 allocated, 0 quarantined, 1 reserved or shared"}}},
		{name: "exhausted while an address is quarantined, until it ends",
			pools: []heldPool{quarantined(poolOf("p", "10.9.0.0/24", "10.9.0.10-10.9.0.12", "10-11"), "10.9.0.12", now.Add(time.Minute))},
			want:  map[string][3]string{v1.PoolExhausted: {"True", ReasonNoFreeAddress, "2 allocated, 1 quarantined"}}, wantChanges: now.Add(time.Minute)},
		{name: "an ended quarantine frees its address",
			pools: []heldPool{quarantined(poolOf("p", "10.9.0.0/24", "10.9.0.10-10.9.0.12", "10-11"), "10.9.0.12", now.Add(-time.Second))},
			want:  map[string][3]string{v1.PoolExhausted: {"False", ReasonAddressesFree, ""}}},
		{name: "exhausted by what another pool holds beyond its spec", pools: []heldPool{
			poolOf("p", "10.9.0.0/24", "10.9.0.10-10.9.0.12", "10-11"),
			poolOf("q", "10.9.0.0/24", "10.9.0.20-10.9.0.29", "12")}, // q's spec was narrowed; it still holds .12
			want: map[string][3]string{v1.PoolExhausted: {"True", ReasonNoFreeAddress, "1 reserved or shared with another pool"},
				v1.PoolOverlapping: {"False", ReasonNoOverlap, ""}}},
		{name: "overlapping names the other pool and the first shared address", pools: []heldPool{
			poolOf("p", "10.9.0.0/24", "10.9.0.10-10.9.0.20", ""),
			poolOf("q", "10.9.0.0/24", "10.9.0.15-10.9.0.30", ""),
			poolOf("z", "10.9.0.0/25", "", "")},
			want: map[string][3]string{
				v1.PoolOverlapping: {"True", ReasonSharesAddresses, "IPPool q, the first 10.9.0.15; IPPool z, the first 10.9.0.10"},
				v1.PoolExhausted:   {"True", ReasonNoFreeAddress, "11 reserved or shared"}}},
		{name: "a pool in another subnet does not overlap", pools: []heldPool{
			poolOf("p", "10.9.0.0/24", "", ""), poolOf("q", "10.9.1.0/24", "", "")},
			want: map[string][3]string{v1.PoolOverlapping: {"False", ReasonNoOverlap, ""}}},
		{name: "invalid spec", pools: []heldPool{poolOf("p", "10.9.0.0/24", "10.9.1.5", "")},
			want: map[string][3]string{
				v1.PoolInvalid:   {"True", ReasonInvalidSpec, "spec.ips"},
				v1.PoolExhausted: {"Unknown", ReasonNotCounted, "Invalid condition"}}},
		{name: "corrupt state.allocated", pools: []heldPool{poolOf("p", "10.9.0.0/24", "", "5-x")},
			want: map[string][3]string{
				v1.PoolInvalid:   {"True", ReasonCorruptStatus, "state.allocated of PoolAllocation p is corrupt"},
				v1.PoolExhausted: {"Unknown", ReasonNotCounted, ""}}},
		{name: "state.allocated past the subnet (1-400000 on a /24)", pools: []heldPool{poolOf("p", "10.9.0.0/24", "", "1-400000")},
			want: map[string][3]string{
				v1.PoolInvalid:   {"True", ReasonCorruptStatus, "is corrupt (offset 400000 lies outside subnet 10.9.0.0/24"},
				v1.PoolExhausted: {"Unknown", ReasonNotCounted, ""}}},
		{name: "state.allocated of 2^32 offsets names the fix", pools: []heldPool{poolOf("p", "10.9.0.0/24", "", "0-4294967295")},
			want: map[string][3]string{
				v1.PoolInvalid: {"True", ReasonCorruptStatus, "kubectl edit poolallocation p"}}},
		{name: "a pool beside one with a state past its subnet is counted as usual", pools: []heldPool{
			poolOf("p", "10.9.0.0/24", "10.9.0.10-10.9.0.12", "10"),
			poolOf("q", "10.9.0.0/25", "10.9.0.100-10.9.0.110", "0-4294967295")}, // corrupt: held at its widest, its own /25
			want: map[string][3]string{
				v1.PoolInvalid:   {"False", ReasonValid, ""},
				v1.PoolExhausted: {"True", ReasonNoFreeAddress, "2 reserved or shared with another pool"}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			pools, states := split(c.pools)
			got, changes := conditionsOf(pools, states, c.reserved, now)
			if !changes.Equal(c.wantChanges) {
				t.Errorf("next change at %v, want %v", changes, c.wantChanges)
			}
			if len(got["p"]) != 3 {
				t.Fatalf("got %d conditions, want Exhausted, Overlapping, Invalid: %+v", len(got["p"]), got["p"])
			}
			for typ, w := range c.want {
				cond := meta.FindStatusCondition(got["p"], typ)
				if cond == nil {
					t.Fatalf("no %s condition in %+v", typ, got["p"])
				}
				if string(cond.Status) != w[0] || cond.Reason != w[1] || !strings.Contains(cond.Message, w[2]) {
					t.Errorf("%s: got %s %s %q, want %s %s and a message with %q", typ, cond.Status, cond.Reason, cond.Message, w[0], w[1], w[2])
				}
			}
		})
	}
}

// The reconciler patches the status guarded by resourceVersion (a write of a pool read
// stale conflicts), and an unchanged pool is not written at all.
func TestPoolConditionsPatchGuardedAndOnlyWhenChanged(t *testing.T) {
	ctx := context.Background()
	pool := poolOf("p", "10.9.0.0/24", "10.9.0.10-10.9.0.11", "10-11")
	pool.state.SetCounts(2, 2)
	c := fake.NewClientBuilder().WithScheme(testScheme(t)).WithObjects(pool.objects()...).WithStatusSubresource(&v1.IPPool{}).Build()
	clock := time.Now()
	r := &poolConditions{c: c, counts: countsMirror{clock: func() time.Time { return clock }}}
	if _, err := r.Reconcile(ctx, reconcile.Request{}); err != nil {
		t.Fatal(err)
	}
	var got v1.IPPool
	if err := c.Get(ctx, client.ObjectKey{Name: "p"}, &got); err != nil {
		t.Fatal(err)
	}
	if !meta.IsStatusConditionTrue(got.Status.Conditions, v1.PoolExhausted) || got.Status.AllocatedIPCount != 2 || got.Status.Usage != "100%" {
		t.Fatalf("want Exhausted and the counts shown, got %+v", got.Status)
	}
	rv := got.ResourceVersion
	clock = clock.Add(time.Hour)
	if _, err := r.Reconcile(ctx, reconcile.Request{}); err != nil {
		t.Fatal(err)
	}
	if err := c.Get(ctx, client.ObjectKey{Name: "p"}, &got); err != nil || got.ResourceVersion != rv {
		t.Fatalf("an unchanged pool was written again (resourceVersion %s -> %s, %v)", rv, got.ResourceVersion, err)
	}

	// another writer changed the pool after it was read: a patch of the stale read conflicts
	stale := got.DeepCopy()
	got.Labels = map[string]string{"x": "y"}
	if err := c.Update(ctx, &got); err != nil {
		t.Fatal(err)
	}
	patch := client.MergeFromWithOptions(stale.DeepCopy(), client.MergeFromWithOptimisticLock{})
	meta.SetStatusCondition(&stale.Status.Conditions, metav1.Condition{Type: v1.PoolExhausted, Status: metav1.ConditionFalse, Reason: "x", Message: "x"})
	if err := c.Status().Patch(ctx, stale, patch); err == nil {
		t.Fatal("a patch of a stale read was applied")
	}
}

// A PoolAllocation that changes many times within the interval makes one IPPool status
// write (each is an event on every node), and the last counts arrive once the interval
// has passed: the reconciler asks to come back for them.
func TestCountsMirrorWritesAPoolOncePerIntervalAndTheLastCountsArrive(t *testing.T) {
	ctx := context.Background()
	held := poolOf("p", "10.9.0.0/24", "10.9.0.10-10.9.0.109", "")
	writes := 0
	c := fake.NewClientBuilder().WithScheme(testScheme(t)).WithObjects(held.objects()...).WithStatusSubresource(&v1.IPPool{}).
		WithInterceptorFuncs(interceptor.Funcs{SubResourceUpdate: func(ctx context.Context, c client.Client, sub string, obj client.Object, opts ...client.SubResourceUpdateOption) error {
			writes++
			return c.SubResource(sub).Update(ctx, obj, opts...)
		}}).Build()
	clock := time.Now()
	r := &poolConditions{c: c, counts: countsMirror{interval: 2 * time.Second, clock: func() time.Time { return clock }}}
	allocate := func(n int) {
		t.Helper()
		a := &v1.PoolAllocation{}
		if err := c.Get(ctx, client.ObjectKey{Name: "p"}, a); err != nil {
			t.Fatal(err)
		}
		a.State.Allocated = fmt.Sprintf("10-%d", 10+n-1)
		a.State.SetCounts(100, int64(n))
		if err := c.Update(ctx, a); err != nil {
			t.Fatal(err)
		}
	}
	allocate(1)
	if _, err := r.Reconcile(ctx, reconcile.Request{}); err != nil || writes != 1 {
		t.Fatalf("first state: %d writes (%v), want 1", writes, err)
	}
	var res reconcile.Result
	for n := 2; n <= 50; n++ {
		clock = clock.Add(30 * time.Millisecond) // 49 commits within 1.5 s
		allocate(n)
		var err error
		if res, err = r.Reconcile(ctx, reconcile.Request{}); err != nil {
			t.Fatal(err)
		}
	}
	if writes != 1 {
		t.Fatalf("%d IPPool writes for 50 states within the interval, want 1", writes)
	}
	if res.RequeueAfter <= 0 || res.RequeueAfter > 2*time.Second {
		t.Fatalf("requeue after %v, want the rest of the interval", res.RequeueAfter)
	}
	clock = clock.Add(res.RequeueAfter)
	if _, err := r.Reconcile(ctx, reconcile.Request{}); err != nil {
		t.Fatal(err)
	}
	var got v1.IPPool
	if err := c.Get(ctx, client.ObjectKey{Name: "p"}, &got); err != nil {
		t.Fatal(err)
	}
	if writes != 2 || got.Status.AllocatedIPCount != 50 || got.Status.FreeIPCount != 50 || got.Status.TotalIPCount != 100 || got.Status.Usage != "50%" {
		t.Fatalf("after the interval: %d writes, status %+v; want 2 writes showing 50 of 100 allocated", writes, got.Status)
	}
}

// A pool nobody allocated from yet (no PoolAllocation) shows its total, all free; one
// whose PoolAllocation is an earlier pool's of its name shows nothing of that state.
func TestCountsOfAPoolWithoutItsStateAreItsSpecsTotal(t *testing.T) {
	ctx := context.Background()
	fresh := poolOf("fresh", "10.9.0.0/24", "10.9.0.10-10.9.0.19", "")
	reborn := poolOf("reborn", "10.9.1.0/24", "10.9.1.10-10.9.1.19", "")
	leftover := v1.AllocationOf(&v1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: "reborn", UID: "uid-earlier"}})
	leftover.State.Allocated = "10-14"
	leftover.State.SetCounts(10, 5)
	c := fake.NewClientBuilder().WithScheme(testScheme(t)).WithObjects(&fresh.pool, &reborn.pool, leftover).WithStatusSubresource(&v1.IPPool{}).Build()
	if _, err := (&poolConditions{c: c}).Reconcile(ctx, reconcile.Request{}); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"fresh", "reborn"} {
		var got v1.IPPool
		if err := c.Get(ctx, client.ObjectKey{Name: name}, &got); err != nil {
			t.Fatal(err)
		}
		if got.Status.TotalIPCount != 10 || got.Status.FreeIPCount != 10 || got.Status.AllocatedIPCount != 0 || got.Status.Usage != "0%" {
			t.Errorf("pool %s shows %+v, want 10 total, 10 free", name, got.Status)
		}
	}
}

// A pool whose spec was narrowed past the webhook while pods hold addresses it no longer
// covers shows them in status.heldOutsideSpec, at once even right after another status
// write (ipamd keeps them out of every other pool from there), and not once released.
func TestHeldOutsideSpecShowsWhatAPoolHoldsPastItsSpec(t *testing.T) {
	ctx := context.Background()
	h := poolOf("p", "10.9.0.0/24", "10.9.0.10-10.9.0.19", "12,15")
	c := fake.NewClientBuilder().WithScheme(testScheme(t)).WithObjects(h.objects()...).WithStatusSubresource(&v1.IPPool{}).Build()
	clock := time.Now()
	r := &poolConditions{c: c, counts: countsMirror{clock: func() time.Time { return clock }}}
	shown := func() string {
		t.Helper()
		if _, err := r.Reconcile(ctx, reconcile.Request{}); err != nil {
			t.Fatal(err)
		}
		var got v1.IPPool
		if err := c.Get(ctx, client.ObjectKey{Name: "p"}, &got); err != nil {
			t.Fatal(err)
		}
		return got.Status.HeldOutsideSpec
	}
	if got := shown(); got != "" {
		t.Fatalf("heldOutsideSpec %q while the spec covers all it holds", got)
	}
	var p v1.IPPool
	if err := c.Get(ctx, client.ObjectKey{Name: "p"}, &p); err != nil {
		t.Fatal(err)
	}
	p.Spec.IPs = []string{"10.9.0.10-10.9.0.13"} // narrowed past the webhook: .15 still held
	if err := c.Update(ctx, &p); err != nil {
		t.Fatal(err)
	}
	if got := shown(); got != "15" {
		t.Fatalf("heldOutsideSpec %q, want 15 written within the interval", got)
	}
	a := &v1.PoolAllocation{}
	if err := c.Get(ctx, client.ObjectKey{Name: "p"}, a); err != nil {
		t.Fatal(err)
	}
	a.State.Allocated = "12"
	if err := c.Update(ctx, a); err != nil {
		t.Fatal(err)
	}
	if got := shown(); got != "" {
		t.Fatalf("heldOutsideSpec %q once released, want empty", got)
	}
}
