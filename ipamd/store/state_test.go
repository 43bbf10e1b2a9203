package store

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/core/allocator"
)

// The allocation state lives in a PoolAllocation no node watches (docs/design.md,
// "Allocation state at 5000 nodes"): ipamd makes it on the pool's first commit, plans from
// its own last write, and learns of other writers only through a conflict or a read.

// The first allocation from a pool makes its state, naming the pool incarnation; the
// IPPool itself is not written.
func TestTheFirstAllocationMakesThePoolsStateOwnedByThePool(t *testing.T) {
	pool := ippool("p", "10.250.1.0/24", "10.250.1.10-10.250.1.20")
	api := fakeAPI(t, pool)
	s := newPools(api, nil)
	if _, _, err := allocate(s, context.Background(), "p"); err != nil {
		t.Fatal(err)
	}
	got := &v1.PoolAllocation{}
	if err := api.Get(context.Background(), client.ObjectKey{Name: "p"}, got); err != nil {
		t.Fatal(err)
	}
	if got.PoolUID != pool.UID || len(got.OwnerReferences) != 0 || got.State.AllocatedIPCount != 1 {
		t.Fatalf("state %+v: want pool uid %s, no owner (AllocationOf says why), 1 allocated", got, pool.UID)
	}
	after := &v1.IPPool{}
	_ = api.Get(context.Background(), client.ObjectKey{Name: "p"}, after)
	if after.Status.AllocatedIPCount != 0 {
		t.Fatalf("ipamd wrote the IPPool's status: %+v", after.Status)
	}
}

// An ensure planned from this ipamd's own last write could answer "already held" for an
// address the sweeper (or an operator) freed since; the address would stay free in the
// API while an Endpoint holds it. An answer that needs no write is given only on a state
// read now.
func TestAnEnsureOnAStateChangedSinceThisNodesWriteMarksTheAddressAgain(t *testing.T) {
	ctx := context.Background()
	api := fakeAPI(t, ippool("p", "10.250.1.0/24", "10.250.1.10-10.250.1.20"))
	s := newPools(api, nil)
	addr, _, err := allocate(s, ctx, "p")
	if err != nil {
		t.Fatal(err)
	}
	editState(t, api, "p", func(st *v1.AllocationState) { st.Allocated = "" }) // freed elsewhere
	lost, err := s.Ensure(ctx, "p", []netip.Addr{addr.Addr()})
	if err != nil || len(lost) != 1 || lost[0] != addr.Addr() {
		t.Fatalf("ensure of %s after it was freed elsewhere: lost %v, %v; want it reported lost", addr, lost, err)
	}
	if held := readState(t, api, "p").Allocated; held != "10" {
		t.Fatalf("state.allocated %q: the ensured address is not marked", held)
	}
}

// A state naming an earlier pool of the same name (deleted and made again before the
// garbage collector removed its state) is dropped, never served: its addresses were the
// earlier pool's, and its marks and cursor mean nothing here.
func TestAnEarlierPoolsStateIsDroppedNotServed(t *testing.T) {
	ctx := context.Background()
	pool := ippool("p", "10.250.1.0/29")
	earlier := v1.AllocationOf(ippool("p", "10.250.1.0/29"))
	earlier.PoolUID = "uid-earlier"
	earlier.State = v1.AllocationState{Allocated: "1-5", Reclaiming: "3", Cursor: "5"}
	api := fakeAPI(t, pool, earlier)
	s := newPools(api, nil)
	addr, _, err := allocate(s, ctx, "p")
	if err != nil || addr.Addr() != netip.MustParseAddr("10.250.1.1") {
		t.Fatalf("allocated %v %v: want the first address, the earlier pool's state ignored", addr, err)
	}
	got := &v1.PoolAllocation{}
	if err := api.Get(ctx, client.ObjectKey{Name: "p"}, got); err != nil {
		t.Fatal(err)
	}
	if got.PoolUID != pool.UID || got.State.Allocated != "1" || got.State.Reclaiming != "" {
		t.Fatalf("state %+v: want this pool's, holding only 10.250.1.1", got)
	}
}

// A closed state (the controller's last write before a deleted pool goes) takes no mark:
// a late re-mark fails rather than write into it, an allocation is refused, and a free
// has nothing to free.
func TestAClosedStateTakesNothingButFrees(t *testing.T) {
	ctx := context.Background()
	pool := ippool("p", "10.250.1.0/29")
	closed := v1.AllocationOf(pool)
	closed.Closed = true
	api := fakeAPI(t, pool, closed)
	s := newPools(api, nil)
	if _, _, err := allocate(s, ctx, "p"); !errors.Is(err, ErrPoolDeleting) {
		t.Fatalf("allocation from a closed state: %v", err)
	}
	if _, err := s.Ensure(ctx, "p", []netip.Addr{netip.MustParseAddr("10.250.1.2")}); !errors.Is(err, ErrPoolDeleting) {
		t.Fatalf("ensure into a closed state: %v", err)
	}
	if err := release(s, ctx, "p", netip.MustParseAddr("10.250.1.2")); err != nil {
		t.Fatalf("free on a closed state: %v", err)
	}
	if st := readState(t, api, "p"); st.Allocated != "" {
		t.Fatalf("a closed state was written: %+v", st)
	}
}

// A pool the importer has made but whose imported state it has not written yet hands
// nothing out: ipamd would start from an empty state and could hand out an imported
// live address.
func TestAPoolBeingImportedHandsNothingOut(t *testing.T) {
	pool := ippool("p", "10.250.1.0/29")
	pool.Annotations = map[string]string{v1.ImportingAnnotation: "true"}
	api := fakeAPI(t, pool)
	s := newPools(api, nil)
	_, _, err := allocate(s, context.Background(), "p")
	if !errors.Is(err, ErrPoolImporting) || !strings.Contains(err.Error(), "kubectl underpool import") {
		t.Fatalf("allocation from a pool being imported: %v", err)
	}
	got := &v1.PoolAllocation{}
	if err := api.Get(context.Background(), client.ObjectKey{Name: "p"}, got); err == nil {
		t.Fatalf("a state was made for a pool being imported: %+v", got)
	}
}

// Found by the simulation (seed 79): an ipamd whose cache still held a pool that had gone
// (its state closed, then deleted) found no state and made a fresh one for the gone
// incarnation, handing out an address the pool made again could hand out a second time.
// A pool's first state is made only after the API shows the pool alive.
func TestNoStateIsMadeForAPoolOnlyTheCacheStillHolds(t *testing.T) {
	api := fakeAPI(t)                                                // the pool went, and so did its closed state
	cache := fakeAPI(t, ippool("p", "10.250.1.0/24", "10.250.1.10")) // a cache that has not seen it go
	s := newPools(api, cache)
	if addr, _, err := allocate(s, context.Background(), "p"); !errors.Is(err, ErrPoolNotFound) {
		t.Fatalf("allocation from a pool only the cache holds: %v %v", addr, err)
	}
	if err := api.Get(context.Background(), client.ObjectKey{Name: "p"}, &v1.PoolAllocation{}); err == nil {
		t.Fatal("a state was made for a pool that is gone")
	}
}

// An upgrade from the version that kept the allocation state in the pool's status: the
// pool's first PoolAllocation starts from status.allocated and status.quarantined, so no
// address a pod holds (or another host answered for) is handed out before its node's
// ipamd re-marked it.
func TestAPoolsFirstStateStartsFromWhatItsStatusHeldBeforeTheUpgrade(t *testing.T) {
	pool := ippool("p", "10.250.1.0/29") // usable .1-.6
	pool.Status.LegacyAllocated = "1-4"
	pool.Status.LegacyQuarantined = []v1.QuarantinedIP{{IP: "10.250.1.5", Until: metav1.NewTime(time.Now().Add(time.Hour))}}
	api := fakeAPI(t, pool)
	s := newPools(api, nil)
	addr, _, err := allocate(s, context.Background(), "p")
	if err != nil || addr.Addr() != netip.MustParseAddr("10.250.1.6") {
		t.Fatalf("allocated %v %v: want 10.250.1.6, the one address the old status left free", addr, err)
	}
	if st := readState(t, api, "p"); st.Allocated != "1-4,6" || len(st.Quarantined) != 1 {
		t.Fatalf("first state %+v: want the old status' addresses and quarantine kept", st)
	}
	if _, _, err := allocate(s, context.Background(), "p"); !errors.Is(err, allocator.ErrExhausted) {
		t.Fatalf("the pool handed out more than the old status left free: %v", err)
	}
}

// A PoolAllocation deleted by hand while its pool exists: a new, empty state would hand
// out addresses pods hold. Once the controller has recorded the pool's state
// (status.allocationUID), ipamd never makes it a new one; the pool hands nothing out,
// saying why and how to repair it.
func TestAPoolWhoseStateWasDeletedByHandHandsNothingOut(t *testing.T) {
	pool := ippool("p", "10.250.1.0/24")
	pool.Status.AllocationUID = "uid-of-the-deleted-state"
	api := fakeAPI(t, pool)
	s := newPools(api, nil)
	_, _, err := allocate(s, context.Background(), "p")
	if !errors.Is(err, ErrStateLost) || !strings.Contains(err.Error(), "restore the PoolAllocation") {
		t.Fatalf("allocation from a pool whose state was deleted: %v", err)
	}
	if err := api.Get(context.Background(), client.ObjectKey{Name: "p"}, &v1.PoolAllocation{}); err == nil {
		t.Fatal("a new state was made for a pool whose state was deleted by hand")
	}
}

// Deleted after this ipamd wrote it, before the controller recorded it: the write finds
// it gone, and this ipamd never makes the pool a new, empty state either.
func TestAStateDeletedUnderThisNodesWritesIsNeverMadeAgainEmpty(t *testing.T) {
	ctx := context.Background()
	api := fakeAPI(t, ippool("p", "10.250.1.0/24", "10.250.1.10-10.250.1.20"))
	s := newPools(api, nil)
	if _, _, err := allocate(s, ctx, "p"); err != nil {
		t.Fatal(err)
	}
	if err := api.Delete(ctx, &v1.PoolAllocation{ObjectMeta: metav1.ObjectMeta{Name: "p"}}); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if _, _, err := allocate(s, ctx, "p"); !errors.Is(err, ErrStateLost) {
			t.Fatalf("allocation %d after the state was deleted: %v", i, err)
		}
	}
	if err := api.Get(ctx, client.ObjectKey{Name: "p"}, &v1.PoolAllocation{}); err == nil {
		t.Fatal("the deleted state was made again")
	}
}
