package store

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	ktypes "k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/core/allocator"
)

func fakeAPI(t *testing.T, objs ...client.Object) client.WithWatch {
	t.Helper()
	scheme := runtime.NewScheme()
	if err := v1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	return fake.NewClientBuilder().WithScheme(scheme).WithStatusSubresource(&v1.IPPool{}).WithObjects(objs...).Build()
}

func ippool(name, subnet string, ips ...string) *v1.IPPool {
	return &v1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: name, UID: ktypes.UID("uid-" + name), Finalizers: []string{v1.PoolProtection}}, Spec: v1.IPPoolSpec{Subnet: subnet, IPs: ips}}
}

// newPools is one ipamd's committer over the API c (its cache is c too unless given).
func newPools(c client.Client, cache client.Reader) *PoolCommitter {
	if cache == nil {
		cache = c
	}
	return NewPoolCommitter(c, cache, c, nil, zap.NewNop(), nil)
}

// allocateAll asks each store for n addresses of each pool at once and returns who got what.
func allocateAll(t *testing.T, stores []*PoolCommitter, pools []string, n int) map[string][]netip.Addr {
	t.Helper()
	var mu sync.Mutex
	got := map[string][]netip.Addr{}
	var wg sync.WaitGroup
	for _, s := range stores {
		for _, pool := range pools {
			for range n {
				wg.Add(1)
				go func() {
					defer wg.Done()
					addr, _, err := allocate(s, context.Background(), pool)
					if err != nil {
						if !errors.Is(err, allocator.ErrExhausted) {
							t.Errorf("allocating from %s: %v", pool, err)
						}
						return
					}
					mu.Lock()
					got[pool] = append(got[pool], addr.Addr())
					mu.Unlock()
				}()
			}
		}
	}
	wg.Wait()
	return got
}

func inRange(a netip.Addr, lo, hi string) bool {
	return netip.MustParseAddr(lo).Compare(a) <= 0 && a.Compare(netip.MustParseAddr(hi)) <= 0
}

// Two pools that share addresses (as two concurrent creates that both passed the webhook
// would) allocate at once from two ipamds: no address is handed out by both, and neither
// hands out the shared ones; what the older pool held before stays held.
func TestOverlappingPoolsNeverHandOutOneAddressTwice(t *testing.T) {
	older := ippool("older", "10.0.0.0/24", "10.0.0.10-10.0.0.20")
	younger := ippool("younger", "10.0.0.0/24", "10.0.0.15-10.0.0.30")
	// 10.0.0.15 was handed out before the younger pool existed
	c := fakeAPI(t, older, stateFor(older, v1.AllocationState{Allocated: "15"}), younger)
	got := allocateAll(t, []*PoolCommitter{newPools(c, nil), newPools(c, nil)}, []string{"older", "younger"}, 20)

	seen := map[netip.Addr]string{}
	for pool, addrs := range got {
		for _, a := range addrs {
			if prev, dup := seen[a]; dup {
				t.Errorf("%s handed out by %s and %s", a, prev, pool)
			}
			seen[a] = pool
			if inRange(a, "10.0.0.15", "10.0.0.20") {
				t.Errorf("%s is shared by both pools and was handed out by %s", a, pool)
			}
		}
	}
	if len(got["older"]) != 5 || len(got["younger"]) != 10 {
		t.Errorf("older got %v, younger got %v: want the 5 and 10 addresses only each holds", got["older"], got["younger"])
	}
	if held := readState(t, c, "older").Allocated; !runsContain(held, 15) {
		t.Errorf("the older pool's earlier allocation was dropped: %q", held)
	}
}

// A pool whose spec does not parse blocks its whole subnet, and a pool being deleted
// still holds what it covers.
func TestUnparsableAndDeletingPoolsBlockWhatTheyCover(t *testing.T) {
	served := ippool("served", "10.0.0.0/24", "10.0.0.10-10.0.0.40")
	broken := ippool("broken", "10.0.0.0/28", "10.9.9.9")              // outside its subnet: covers 10.0.0.0-15
	leaving := ippool("leaving", "10.0.0.0/24", "10.0.0.32-10.0.0.40") // being deleted
	other6 := ippool("other-family", "fd00::/64", "fd00::a-fd00::30")  // never meets an IPv4 pool
	now := metav1.Now()
	leaving.DeletionTimestamp, leaving.Finalizers = &now, []string{"underpool.io/test"}
	c := fakeAPI(t, served, broken, leaving, other6)
	got := allocateAll(t, []*PoolCommitter{newPools(c, nil)}, []string{"served"}, 40)
	if len(got["served"]) != 16 {
		t.Errorf("got %d addresses, want 16 (10.0.0.16-10.0.0.31)", len(got["served"]))
	}
	for _, a := range got["served"] {
		if !inRange(a, "10.0.0.16", "10.0.0.31") {
			t.Errorf("%s is covered by another pool", a)
		}
	}
}

// What a pool holds stays blocked even when its spec no longer covers it (narrowed past
// the webhook: the controller shows it in status.heldOutsideSpec), and a value there that
// does not parse covers the pool's whole subnet.
func TestAddressesAnotherPoolHoldsAreBlocked(t *testing.T) {
	narrowed := ippool("narrowed", "10.0.0.0/24", "10.0.0.10-10.0.0.12")
	narrowed.Status.HeldOutsideSpec = "20" // 10.0.0.20 is still held by a pod
	corrupt := ippool("corrupt", "10.0.0.0/28", "10.0.0.2")
	corrupt.Status.HeldOutsideSpec = "zz" // covers 10.0.0.0-15
	served := ippool("served", "10.0.0.0/24", "10.0.0.13-10.0.0.21")
	c := fakeAPI(t, narrowed, corrupt, served)
	got := allocateAll(t, []*PoolCommitter{newPools(c, nil)}, []string{"served"}, 10)
	want := map[string]bool{"10.0.0.16": true, "10.0.0.17": true, "10.0.0.18": true, "10.0.0.19": true, "10.0.0.21": true}
	if len(got["served"]) != len(want) {
		t.Errorf("got %v, want %v", got["served"], want)
	}
	for _, a := range got["served"] {
		if !want[a.String()] {
			t.Errorf("%s is held or covered by another pool", a)
		}
	}
}

// When the informer has not seen the pool yet (read from the API), the other pools are
// read from the API too: the lagging cache may not hold the older pool either.
func TestOverlapCheckedAgainstTheAPIWhenTheCacheLags(t *testing.T) {
	older := ippool("older", "10.0.0.0/24", "10.0.0.10-10.0.0.20")
	younger := ippool("younger", "10.0.0.0/24", "10.0.0.10-10.0.0.12")
	c := fakeAPI(t, older, younger)
	lagging := fakeAPI(t) // an informer that has seen neither pool
	s := newPools(c, lagging)
	if addr, _, err := allocate(s, context.Background(), "younger"); !errors.Is(err, allocator.ErrExhausted) {
		t.Fatalf("the younger pool handed out %v (%v) though every address is shared", addr, err)
	}
}

// Not knowing what is reserved fails the allocation (nothing is handed out); releases
// still go through.
func TestBlockedErrorFailsTheAllocation(t *testing.T) {
	p := ippool("p", "10.0.0.0/24", "10.0.0.10-10.0.0.20")
	c := fakeAPI(t, p, stateFor(p, v1.AllocationState{Allocated: "12"}))
	s := NewPoolCommitter(c, c, c, func(context.Context, *allocator.PoolView) (allocator.RunSet, error) {
		return allocator.RunSet{}, errors.New("informer unavailable")
	}, zap.NewNop(), nil)
	if addr, _, err := allocate(s, context.Background(), "p"); err == nil || !strings.Contains(err.Error(), "informer unavailable") {
		t.Fatalf("allocation got %v, %v: want the listing error", addr, err)
	}
	if err := release(s, context.Background(), "p", netip.MustParseAddr("10.0.0.12")); err != nil {
		t.Fatalf("release: %v", err)
	}
	if held := readState(t, c, "p").Allocated; held != "" {
		t.Fatalf("state.allocated %q: the failed allocation wrote something, or the release did not", held)
	}
}

// A pool that cannot be re-marked hands nothing out, naming itself, its problem and the
// fix; once repaired, the held addresses are marked in the same write as the first
// allocation, so none of them is handed out.
func TestPendingRemarkRefusesThePoolUntilRepaired(t *testing.T) {
	ctx := context.Background()
	bad := ippool("bad", "10.0.0.0/29") // usable 10.0.0.1-6
	c := fakeAPI(t, bad, stateFor(bad, v1.AllocationState{Allocated: "not-a-run-set"}))
	s := newPools(c, nil)
	held := []netip.Addr{netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2")}
	var unusable *UnusableError
	if _, err := s.Remark(ctx, "bad", held); !errors.As(err, &unusable) || unusable.Reason != ReasonCorruptStatus {
		t.Fatalf("re-marking in a corrupt pool: %v", err)
	}
	if v := testutil.ToFloat64(s.metrics.PendingRemark.WithLabelValues("bad", ReasonCorruptStatus)); v != 2 {
		t.Errorf("pending metric = %v, want 2", v)
	}
	if v := testutil.ToFloat64(s.metrics.Unusable.WithLabelValues("bad", ReasonCorruptStatus)); v == 0 {
		t.Error("underpool_pool_unusable_total not counted")
	}
	_, _, err := allocate(s, ctx, "bad")
	for _, want := range []string{"IPPool bad", "state.allocated is corrupt", "kubectl edit poolallocation bad"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("allocation error %v does not say %q", err, want)
		}
	}
	// an operator clears the state: the pending addresses must be marked before anything
	// is handed out, or 10.0.0.1 would go to a second pod
	editState(t, c, "bad", func(st *v1.AllocationState) { st.Allocated = "" })
	addr, _, err := allocate(s, ctx, "bad")
	if err != nil || addr.Addr() == held[0] || addr.Addr() == held[1] {
		t.Fatalf("after repair got %v %v: want an address no Endpoint holds", addr, err)
	}
	if held := readState(t, c, "bad").Allocated; !runsContain(held, 1) || !runsContain(held, 2) {
		t.Errorf("state.allocated %q lacks the re-marked addresses", held)
	}
	if left := s.PendingRemarks(); len(left) != 0 {
		t.Errorf("still pending: %v", left)
	}
	if n := testutil.CollectAndCount(s.metrics.PendingRemark); n != 0 {
		t.Errorf("pending metric still has %d series", n)
	}
}

// RetryRemarks repairs an idle pool without waiting for an allocation.
func TestRetryRemarksMarksIdlePools(t *testing.T) {
	ctx := context.Background()
	bad := ippool("bad", "10.0.0.0/29", "10.0.0.1-10.0.0.99") // spec does not parse
	c := fakeAPI(t, bad)
	s := newPools(c, nil)
	if _, err := s.Remark(ctx, "bad", []netip.Addr{netip.MustParseAddr("10.0.0.3")}); err == nil || !strings.Contains(err.Error(), "kubectl edit ippool bad") {
		t.Fatalf("re-marking in an invalid pool: %v", err)
	}
	if failed := s.RetryRemarks(ctx); failed["bad"] == nil {
		t.Fatalf("retry of a still invalid pool: %v", failed)
	}
	var fresh v1.IPPool
	_ = c.Get(ctx, client.ObjectKey{Name: "bad"}, &fresh)
	fresh.Spec.IPs = nil
	if err := c.Update(ctx, &fresh); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(s.RetryRemarks(ctx)) > 0 && time.Now().Before(deadline) {
	}
	if held := readState(t, c, "bad").Allocated; held != "3" || len(s.PendingRemarks()) != 0 {
		t.Fatalf("after the fix: state %q, pending %v", held, s.PendingRemarks())
	}
}

// Many application pools carved from one Subnet all meet each other's prefix: the blocked
// set of one commit must stay cheap.
func BenchmarkBlockedWithManyPoolsInOneSubnet(b *testing.B) {
	var objs []client.Object
	for i := range 500 {
		lo := netip.AddrFrom4([4]byte{10, 0, byte(i / 25), byte(i%25*10 + 1)})
		hi := netip.AddrFrom4([4]byte{10, 0, byte(i / 25), byte(i%25*10 + 8)})
		p := ippool(fmt.Sprintf("app-%d", i), "10.0.0.0/16", lo.String()+"-"+hi.String())
		p.Generation = 1
		objs = append(objs, p)
	}
	t := &testing.T{}
	s := newPools(fakeAPI(t, objs...), nil)
	view, _ := allocator.NewPool("app-0", &objs[0].(*v1.IPPool).Spec)
	b.ResetTimer()
	for range b.N {
		if _, err := s.blocked(context.Background(), view, true); err != nil {
			b.Fatal(err)
		}
	}
}
