package controller

import (
	"context"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	v1 "github.com/underpool/underpool/api/v1"
)

// deleting is a pool being deleted, held by its protection finalizer.
func deleting(h heldPool) heldPool {
	h.pool.Finalizers = []string{PoolProtection}
	h.pool.DeletionTimestamp = &metav1.Time{Time: time.Now()}
	return h
}

func finalizerKept(t *testing.T, c client.Reader) bool {
	t.Helper()
	p := &v1.IPPool{}
	err := c.Get(context.Background(), client.ObjectKey{Name: "p"}, p)
	if apierrors.IsNotFound(err) {
		return false
	}
	if err != nil {
		t.Fatal(err)
	}
	return controllerutil.ContainsFinalizer(p, PoolProtection)
}

// racingTheClosingWrite is an API where, before each of the controller's first `times`
// closing writes of the pool's state lands, another writer (an ipamd) changes the state
// with change; it counts the races run.
func racingTheClosingWrite(t *testing.T, h heldPool, times int, change func(*v1.AllocationState)) (client.Client, *int) {
	t.Helper()
	raced := 0
	c := fake.NewClientBuilder().WithScheme(testScheme(t)).WithObjects(h.objects()...).
		WithInterceptorFuncs(interceptor.Funcs{Update: func(ctx context.Context, cl client.WithWatch, obj client.Object, opts ...client.UpdateOption) error {
			if a, ok := obj.(*v1.PoolAllocation); ok && a.Closed && raced < times {
				raced++
				theirs := &v1.PoolAllocation{}
				if err := cl.Get(ctx, client.ObjectKey{Name: a.Name}, theirs); err != nil {
					return err
				}
				change(&theirs.State)
				if err := cl.Update(ctx, theirs); err != nil {
					return err
				}
			}
			return cl.Update(ctx, obj, opts...)
		}}).Build()
	return c, &raced
}

// The pool and its state are two objects: an ipamd commit that lands between the
// controller's read of the empty state and its closing write must keep the pool. The
// closing write is guarded by the resourceVersion read, so it conflicts, the state is
// read again, holds the address, and the finalizer stays.
func TestAnAddressCommittedBeforeTheClosingWriteKeepsThePool(t *testing.T) {
	ctx := context.Background()
	h := deleting(poolOf("p", "10.9.0.0/24", "", ""))
	// an ipamd on some node commits 10.9.0.5 first
	c, raced := racingTheClosingWrite(t, h, 1, func(st *v1.AllocationState) { st.Allocated = "5" })
	if _, err := (&poolFinalizer{c: c}).Reconcile(ctx, reconcile.Request{NamespacedName: client.ObjectKey{Name: "p"}}); err != nil {
		t.Fatal(err)
	}
	if *raced != 1 {
		t.Fatal("the closing write was never tried")
	}
	if !finalizerKept(t, c) {
		t.Fatal("the pool went while its state holds an address committed before the closing write")
	}
	got := &v1.PoolAllocation{}
	if err := c.Get(ctx, client.ObjectKey{Name: "p"}, got); err != nil || got.Closed || got.State.Allocated != "5" {
		t.Fatalf("state %+v (%v), want the address kept and the state open", got, err)
	}
}

// A deleted pool nobody allocated from (no PoolAllocation) goes once a closed, empty one
// is created for it; one whose PoolAllocation is an earlier pool's (another PoolUID) goes
// once that is replaced by its own closed one, whatever the earlier state held.
func TestADeletedPoolGoesOnlyAfterItsOwnStateIsClosed(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		objs func(h heldPool) []client.Object
	}{
		{"no PoolAllocation", func(h heldPool) []client.Object { return []client.Object{&h.pool} }},
		{"an earlier pool's PoolAllocation", func(h heldPool) []client.Object {
			earlier := v1.AllocationOf(&v1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: "p", UID: "uid-earlier"}})
			earlier.State.Allocated = "5-9"
			return []client.Object{&h.pool, earlier}
		}},
		{"its own, empty", func(h heldPool) []client.Object { return h.objects() }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := deleting(poolOf("p", "10.9.0.0/24", "", ""))
			c := fake.NewClientBuilder().WithScheme(testScheme(t)).WithObjects(tc.objs(h)...).Build()
			if _, err := (&poolFinalizer{c: c}).Reconcile(ctx, reconcile.Request{NamespacedName: client.ObjectKey{Name: "p"}}); err != nil {
				t.Fatal(err)
			}
			if finalizerKept(t, c) {
				t.Fatal("the finalizer of an empty deleted pool stayed")
			}
			got := &v1.PoolAllocation{}
			if err := c.Get(ctx, client.ObjectKey{Name: "p"}, got); err != nil || !got.Closed || got.PoolUID != h.pool.UID || got.State.Allocated != "" {
				t.Fatalf("state %+v (%v), want the pool's own, closed and empty", got, err)
			}
		})
	}
}

// Any write of the state between the read and the closing write makes the closing write
// conflict and read again; a state that still holds nothing is then closed.
func TestAClosingWriteThatConflictsReadsAgain(t *testing.T) {
	ctx := context.Background()
	h := deleting(poolOf("p", "10.9.0.0/24", "", ""))
	// an ipamd's allocation and its rollback, say: the state moves on, empty
	c, bumps := racingTheClosingWrite(t, h, 2, func(st *v1.AllocationState) { st.Cursor = "7" })
	if _, err := (&poolFinalizer{c: c}).Reconcile(ctx, reconcile.Request{NamespacedName: client.ObjectKey{Name: "p"}}); err != nil {
		t.Fatal(err)
	}
	if *bumps != 2 || finalizerKept(t, c) {
		t.Fatalf("after %d conflicting writes the finalizer stayed: %v", *bumps, finalizerKept(t, c))
	}
}

// An upgrade: a pool whose status still holds the allocation state of before
// PoolAllocations (status.allocated) and has no PoolAllocation yet holds those addresses:
// deleted, it stays until they are freed; and once its PoolAllocation exists (seeded from
// that status by its first writer), the controller clears the old copy.
func TestAPoolsStateFromBeforeTheUpgradeKeepsItAndGoesOnceMigrated(t *testing.T) {
	ctx := context.Background()
	h := deleting(poolOf("p", "10.9.0.0/24", "", ""))
	h.pool.Status.LegacyAllocated = "5"
	c := fake.NewClientBuilder().WithScheme(testScheme(t)).WithObjects(h.pool.DeepCopy()).WithStatusSubresource(&v1.IPPool{}).Build()
	if _, err := (&poolFinalizer{c: c}).Reconcile(ctx, reconcile.Request{NamespacedName: client.ObjectKey{Name: "p"}}); err != nil {
		t.Fatal(err)
	}
	if !finalizerKept(t, c) {
		t.Fatal("a pool went while its status from before the upgrade holds an address")
	}

	live := poolOf("q", "10.8.0.0/24", "", "")
	live.pool.Status.LegacyAllocated = "7"
	migratedState := v1.AllocationOf(&live.pool) // its first writer seeded it from the status
	migratedState.State.SetCounts(254, 1)
	c = fake.NewClientBuilder().WithScheme(testScheme(t)).WithObjects(live.pool.DeepCopy(), migratedState).WithStatusSubresource(&v1.IPPool{}).Build()
	r := &poolConditions{c: c, counts: countsMirror{interval: time.Second}}
	if _, err := r.Reconcile(ctx, reconcile.Request{}); err != nil {
		t.Fatal(err)
	}
	got := &v1.IPPool{}
	if err := c.Get(ctx, client.ObjectKey{Name: "q"}, got); err != nil {
		t.Fatal(err)
	}
	if got.Status.LegacyAllocated != "" || got.Status.AllocatedIPCount != 1 {
		t.Fatalf("status after migration %+v: want the old copy cleared, the state's count shown", got.Status)
	}
}

// The controller records a pool's PoolAllocation in status.allocationUID; a deleted pool
// whose recorded state was deleted by hand stays: what it held is unknown.
func TestAPoolWhoseRecordedStateWasDeletedByHandStays(t *testing.T) {
	ctx := context.Background()
	live := poolOf("q", "10.8.0.0/24", "", "7")
	objs := live.objects()
	objs[1].(*v1.PoolAllocation).UID = "uid-of-the-state" // the fake client makes none
	c := fake.NewClientBuilder().WithScheme(testScheme(t)).WithObjects(objs...).WithStatusSubresource(&v1.IPPool{}).Build()
	if _, err := (&poolConditions{c: c, counts: countsMirror{interval: time.Second}}).Reconcile(ctx, reconcile.Request{}); err != nil {
		t.Fatal(err)
	}
	got, state := &v1.IPPool{}, &v1.PoolAllocation{}
	if err := c.Get(ctx, client.ObjectKey{Name: "q"}, got); err != nil {
		t.Fatal(err)
	}
	if err := c.Get(ctx, client.ObjectKey{Name: "q"}, state); err != nil {
		t.Fatal(err)
	}
	if got.Status.AllocationUID == "" || got.Status.AllocationUID != state.UID {
		t.Fatalf("status.allocationUID %q, want the state's %q", got.Status.AllocationUID, state.UID)
	}

	h := deleting(poolOf("p", "10.9.0.0/24", "", ""))
	h.pool.Status.AllocationUID = "uid-of-the-deleted-state"
	c = fake.NewClientBuilder().WithScheme(testScheme(t)).WithObjects(h.pool.DeepCopy()).WithStatusSubresource(&v1.IPPool{}).Build()
	if _, err := (&poolFinalizer{c: c}).Reconcile(ctx, reconcile.Request{NamespacedName: client.ObjectKey{Name: "p"}}); err != nil {
		t.Fatal(err)
	}
	if !finalizerKept(t, c) {
		t.Fatal("a pool went though its recorded state was deleted by hand")
	}
}
