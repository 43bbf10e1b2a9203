package store

import (
	"net/netip"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/core/allocator"
)

// planFor parses a /29 pool (offsets 1-6 usable) and status as the commit loop would.
func planFor(t *testing.T, status v1.AllocationState, ops ...*poolOp) statusPlan {
	t.Helper()
	pool, err := allocator.NewPool("p", &v1.IPPoolSpec{Subnet: "10.250.0.0/29"})
	if err != nil {
		t.Fatal(err)
	}
	allocated, err := pool.ParseAllocated(status.Allocated)
	if err != nil {
		t.Fatal(err)
	}
	return nextStatus(&status, pool, allocated, ops, allocator.RunSet{}, time.Unix(1_000_000, 0))
}

func addr(s string) netip.Addr { return netip.MustParseAddr(s) }

// TestPlanningAnAllocationMarksItAndMovesTheCursor: the status to write holds the new
// address, the counts and the cursor; the answer is the address.
func TestPlanningAnAllocationMarksItAndMovesTheCursor(t *testing.T) {
	plan := planFor(t, v1.AllocationState{Allocated: "1"}, &poolOp{kind: opAllocate})
	if !plan.changed || plan.results[0].err != nil || plan.results[0].addr.Addr() != addr("10.250.0.2") {
		t.Fatalf("allocation planned %+v", plan.results[0])
	}
	if plan.next.Allocated != "1-2" || plan.next.Cursor == "" || plan.next.AllocatedIPCount != 2 {
		t.Fatalf("next status %+v", plan.next)
	}
}

// TestPlanningAFreeDropsItsReclaimMark: a free ends the allocation a sweeper's mark was
// about, so the mark goes in the same write (a later mark then proves a later allocation).
func TestPlanningAFreeDropsItsReclaimMark(t *testing.T) {
	plan := planFor(t, v1.AllocationState{Allocated: "1-3", Reclaiming: "2-3"}, &poolOp{kind: opRelease, addr: addr("10.250.0.2")})
	if !plan.changed || plan.next.Allocated != "1,3" || plan.next.Reclaiming != "3" {
		t.Fatalf("next status allocated %q reclaiming %q, want 1,3 and 3", plan.next.Allocated, plan.next.Reclaiming)
	}
}

// TestPlanningAnEnsureReportsWhatItHadToMarkAgain: ensuring held addresses marks the
// missing ones, reports them as lost, and drops their marks (an Endpoint holds them).
func TestPlanningAnEnsureReportsWhatItHadToMarkAgain(t *testing.T) {
	plan := planFor(t, v1.AllocationState{Allocated: "1", Reclaiming: "1"},
		&poolOp{kind: opEnsure, addrs: []netip.Addr{addr("10.250.0.1"), addr("10.250.0.4")}})
	lost := plan.results[0].lost
	if len(lost) != 1 || lost[0] != addr("10.250.0.4") {
		t.Fatalf("lost %v, want only 10.250.0.4", lost)
	}
	if plan.next.Allocated != "1,4" || plan.next.Reclaiming != "" {
		t.Fatalf("next status allocated %q reclaiming %q", plan.next.Allocated, plan.next.Reclaiming)
	}
}

// TestPlanningWhatChangesNothingWritesNothing: a free of an address already free, with
// the counts already right, needs no write.
func TestPlanningWhatChangesNothingWritesNothing(t *testing.T) {
	first := planFor(t, v1.AllocationState{Allocated: "1"}, &poolOp{kind: opRelease, addr: addr("10.250.0.5")})
	again := planFor(t, first.next, &poolOp{kind: opRelease, addr: addr("10.250.0.5")})
	if again.changed || again.results[0].changed {
		t.Fatalf("a free of a free address on a settled state plans a write")
	}
}

// TestPlanningDropsAnExpiredQuarantineAndHandsItsAddressOut: an expired entry is gone
// from the status to write, and its address can be allocated again in the same batch.
func TestPlanningDropsAnExpiredQuarantineAndHandsItsAddressOut(t *testing.T) {
	expired := v1.QuarantinedIP{IP: "10.250.0.1", Until: metav1.NewTime(time.Unix(999_000, 0))}
	live := v1.QuarantinedIP{IP: "10.250.0.2", Until: metav1.NewTime(time.Unix(2_000_000, 0))}
	plan := planFor(t, v1.AllocationState{Quarantined: []v1.QuarantinedIP{expired, live}}, &poolOp{kind: opAllocate}, &poolOp{kind: opAllocate})
	if len(plan.next.Quarantined) != 1 || plan.next.Quarantined[0].IP != "10.250.0.2" {
		t.Fatalf("quarantine after planning: %+v", plan.next.Quarantined)
	}
	got := []netip.Addr{plan.results[0].addr.Addr(), plan.results[1].addr.Addr()}
	for _, a := range got {
		if a == addr("10.250.0.2") {
			t.Fatalf("a quarantined address was handed out: %v", got)
		}
	}
	if got[0] != addr("10.250.0.1") && got[1] != addr("10.250.0.1") {
		t.Fatalf("the expired quarantine's address was not handed out: %v", got)
	}
}
