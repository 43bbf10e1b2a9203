package store

import (
	"context"
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	testingclock "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	v1 "github.com/underpool/underpool/api/v1"
)

// A free whose evidence is older than half the commit window is not sent: it could land
// after the orphan sweeper freed the address and handed it out again. The address stays
// allocated, for the sweeper.
func TestAFreeWhoseWindowClosedFreesNothing(t *testing.T) {
	api := fakeAPI(t, ippool("p", "10.250.1.0/24"))
	clk := testingclock.NewFakeClock(time.Now())
	s := newPools(api, nil)
	s.Clock, s.Window = clk, Window(time.Minute)
	g, err := s.Allocate(context.Background(), "p")
	if err != nil {
		t.Fatal(err)
	}
	evidence := clk.Now()
	clk.Step(31 * time.Second)
	err = s.Release(context.Background(), Free{Pool: "p", PoolUID: g.PoolUID, Addr: g.Addr.Addr(), Evidence: evidence})
	if !errors.Is(err, ErrWindowClosed) {
		t.Fatalf("late free = %v, want ErrWindowClosed", err)
	}
	if got := readState(t, api, "p").AllocatedIPCount; got != 1 {
		t.Fatalf("allocated = %d after a late free, want 1 (left for the sweeper)", got)
	}
	if err := s.Release(context.Background(), Free{Pool: "p", PoolUID: g.PoolUID, Addr: g.Addr.Addr(), Evidence: clk.Now()}); err != nil {
		t.Fatal(err)
	}
	if got := readState(t, api, "p").AllocatedIPCount; got != 0 {
		t.Fatalf("allocated = %d after a timely free, want 0", got)
	}
}

// A free names the pool incarnation its address came from: a pool deleted and made again
// under the same name keeps the address a new pod now holds.
func TestAFreeOfAnEarlierPoolOfTheSameNameFreesNothing(t *testing.T) {
	api := fakeAPI(t, ippool("p", "10.250.1.0/24", "10.250.1.5"))
	s := newPools(api, nil)
	g, err := s.Allocate(context.Background(), "p")
	if err != nil {
		t.Fatal(err)
	}
	err = s.Release(context.Background(), Free{Pool: "p", PoolUID: "uid-of-a-deleted-p", Addr: g.Addr.Addr(), Evidence: s.now()})
	if err != nil {
		t.Fatal(err)
	}
	if got := readState(t, api, "p").AllocatedIPCount; got != 1 {
		t.Fatalf("allocated = %d: a free for an earlier incarnation freed the new pool's address", got)
	}
}

// A pool without its protection finalizer hands nothing out (it could be deleted at once
// with its addresses held); one that gets it while the allocation waits serves it.
func TestAPoolWithoutProtectionHandsNothingOut(t *testing.T) {
	for _, tc := range []struct {
		name      string
		protectIn time.Duration // -1: never
	}{{"never protected", -1}, {"protected a moment later", 20 * time.Millisecond}} {
		t.Run(tc.name, func(t *testing.T) {
			pool := ippool("p", "10.250.1.0/24")
			pool.Finalizers = nil
			api := fakeAPI(t, pool)
			s := newPools(api, nil)
			s.ProtectionPatience = 300 * time.Millisecond
			if tc.protectIn >= 0 {
				go func() {
					time.Sleep(tc.protectIn)
					p := &v1.IPPool{}
					_ = api.Get(context.Background(), client.ObjectKey{Name: "p"}, p)
					p.Finalizers = []string{v1.PoolProtection}
					_ = api.Update(context.Background(), p)
				}()
			}
			_, err := s.Allocate(context.Background(), "p")
			if tc.protectIn < 0 {
				if !errors.Is(err, ErrPoolUnprotected) {
					t.Fatalf("allocation from an unprotected pool = %v, want ErrPoolUnprotected", err)
				}
				if got := readState(t, api, "p").AllocatedIPCount; got != 0 {
					t.Fatalf("allocated = %d from an unprotected pool", got)
				}
				return
			}
			if err != nil {
				t.Fatalf("allocation once the pool is protected: %v", err)
			}
		})
	}
}

// A release drops the address' reclaim mark in the same write that frees it, and so does
// an ensure (an Endpoint holds it): while a mark stays, the allocation it was made for
// has not ended.
func TestWhatEndsAnAllocationDropsItsMark(t *testing.T) {
	for _, tc := range []struct {
		name string
		do   func(s *PoolCommitter, addr netip.Addr) error
		want int64 // allocated after
	}{
		{"release", func(s *PoolCommitter, addr netip.Addr) error {
			return s.Release(context.Background(), Free{Pool: "p", Addr: addr, Evidence: s.now()})
		}, 0},
		{"quarantine", func(s *PoolCommitter, addr netip.Addr) error {
			_, err := s.Quarantine(context.Background(), Free{Pool: "p", Addr: addr, Evidence: s.now()}, "02:00:00:00:00:01", s.now().Add(time.Minute), QuarantineLimits{})
			return err
		}, 0},
		{"ensure", func(s *PoolCommitter, addr netip.Addr) error {
			_, err := s.Ensure(context.Background(), "p", []netip.Addr{addr})
			return err
		}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pool := ippool("p", "10.250.1.0/24")
			api := fakeAPI(t, pool, stateFor(pool, v1.AllocationState{Allocated: "5", Reclaiming: "5"}))
			s := newPools(api, nil)
			if err := tc.do(s, netip.MustParseAddr("10.250.1.5")); err != nil {
				t.Fatal(err)
			}
			st := readState(t, api, "p")
			if st.Reclaiming != "" || st.AllocatedIPCount != tc.want {
				t.Fatalf("state after %s: reclaiming %q allocated %d, want no mark and %d allocated", tc.name, st.Reclaiming, st.AllocatedIPCount, tc.want)
			}
		})
	}
}

// Conflicts back off with full jitter under an exponential ceiling, and a batch keeps
// retrying until the conflicts clear (within its patience) instead of failing after a
// fixed count: N nodes on one pool spread their retries and none fails for "conflict".
func TestConflictsBackOffWithJitterUntilTheyClear(t *testing.T) {
	conflicts := 12
	api := fakeAPI(t, ippool("p", "10.250.1.0/24"))
	racing := interceptedPools(api, func() error {
		if conflicts > 0 {
			conflicts--
			return apierrors.NewConflict(schema.GroupResource{Group: "underpool.io", Resource: "poolallocations"}, "p", errors.New("another node wrote first"))
		}
		return nil
	})
	s := newPools(racing, api)
	var ceilings []time.Duration
	s.Jitter = func(d time.Duration) time.Duration { ceilings = append(ceilings, d); return 0 }
	if _, err := s.Allocate(context.Background(), "p"); err != nil {
		t.Fatalf("allocation under 12 conflicts: %v", err)
	}
	if len(ceilings) != 12 {
		t.Fatalf("backed off %d times, want once per conflict (12)", len(ceilings))
	}
	for i := 1; i < len(ceilings); i++ {
		if ceilings[i] < ceilings[i-1] || ceilings[i] > backoffCap {
			t.Fatalf("backoff ceilings %v: want non-decreasing, at most %v", ceilings, backoffCap)
		}
	}
	if ceilings[len(ceilings)-1] <= ceilings[0] {
		t.Fatalf("backoff ceilings %v do not grow", ceilings)
	}
	if got := testutil.ToFloat64(s.metrics.Conflicts); got != 12 {
		t.Fatalf("underpool_pool_commit_conflicts_total = %v, want 12", got)
	}
}

// interceptedPools is api whose allocation state writes (creates and updates of
// PoolAllocations) first ask fail for an error to return.
func interceptedPools(api client.WithWatch, fail func() error) client.WithWatch {
	return interceptor.NewClient(api, interceptor.Funcs{
		Create: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.CreateOption) error {
			if _, ok := obj.(*v1.PoolAllocation); ok {
				if err := fail(); err != nil {
					return err
				}
			}
			return c.Create(ctx, obj, opts...)
		},
		Update: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.UpdateOption) error {
			if _, ok := obj.(*v1.PoolAllocation); ok {
				if err := fail(); err != nil {
					return err
				}
			}
			return c.Update(ctx, obj, opts...)
		}})
}
