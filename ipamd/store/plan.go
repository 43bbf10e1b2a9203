package store

import (
	"net/netip"
	"strconv"
	"time"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/core/allocator"
)

// statusPlan is what one batch makes of a pool's allocation state: the answer to each op
// and the state to write. Planning is pure, so every rule of the pool's allocation state is
// tested without a client; the commit loop only reads, writes and retries.
type statusPlan struct {
	results []opResult
	next    v1.AllocationState
	// changed is whether next differs from the state read (a write is needed)
	changed bool
}

// nextStatus applies ops, in order, to the allocation state read from the API. pool is
// the parsed spec, allocated the parsed state.allocated, blocked the offsets kept out of
// allocation besides the quarantined ones (reservations, overlaps).
func nextStatus(status *v1.AllocationState, pool *allocator.PoolView, allocated allocator.RunSet, ops []*poolOp,
	blocked allocator.RunSet, now time.Time) statusPlan {
	// a cursor that does not parse only costs where the search starts
	cursor, _ := strconv.ParseUint(status.Cursor, 10, 64)
	st := &allocator.State{Pool: pool, Allocated: allocated, Cursor: cursor}
	// marks that do not parse are dropped: a mark only lets the sweeper free, so losing
	// one delays a reclaim and never frees anything
	reclaiming, _ := allocator.ParseRunSet(status.Reclaiming)
	quarantined, changed := liveQuarantine(status.Quarantined, now)

	blocked = blocked.Clone()
	for _, q := range quarantined {
		if a, err := netip.ParseAddr(q.IP); err == nil {
			if o, ok := pool.Offset(a); ok {
				blocked.Add(o)
			}
		}
	}
	// unmark drops an address' reclaim mark: whatever frees or proves it held ends the
	// allocation the mark was about
	unmark := func(addr netip.Addr) bool {
		o, ok := pool.Offset(addr)
		return ok && reclaiming.Remove(o)
	}
	results := make([]opResult, len(ops))
	for i, op := range ops {
		r := &results[i]
		r.pool = pool
		switch op.kind {
		case opAllocate:
			r.addr, r.err = st.Allocate(blocked)
			r.changed = r.err == nil
		case opAllocateExact:
			r.addr, r.err = st.AllocateExact(op.addr, blocked)
			r.changed = r.err == nil
		case opRelease:
			r.changed = st.Release(op.addr)
			r.changed = unmark(op.addr) || r.changed
		case opEnsure:
			for _, a := range op.addrs {
				if st.Ensure(a) {
					r.lost = append(r.lost, a)
				}
				r.changed = unmark(a) || r.changed // an Endpoint holds it: no orphan
			}
			r.changed = r.changed || len(r.lost) > 0
		case opQuarantine:
			r.changed = unmark(op.addr)
			r.changed = applyQuarantine(st, op, &quarantined, &blocked) || r.changed
		}
		changed = changed || r.changed
	}

	next := *status.DeepCopy()
	next.Allocated = st.Allocated.String()
	next.Reclaiming = reclaiming.String()
	next.Quarantined = quarantined
	next.SetCounts(pool.TotalCount(), int64(st.Allocated.Count()))
	if hasAllocation(ops) {
		next.Cursor = strconv.FormatUint(st.Cursor, 10)
	}
	changed = changed || next.Reclaiming != status.Reclaiming || next.TotalIPCount != status.TotalIPCount ||
		next.AllocatedIPCount != status.AllocatedIPCount || next.FreeIPCount != status.FreeIPCount
	return statusPlan{results: results, next: next, changed: changed}
}

// liveQuarantine drops expired entries; it reports whether any was dropped.
func liveQuarantine(list []v1.QuarantinedIP, now time.Time) ([]v1.QuarantinedIP, bool) {
	var out []v1.QuarantinedIP
	for _, q := range list {
		if q.Until.Time.After(now) {
			out = append(out, q)
		}
	}
	return out, len(out) != len(list)
}

func withoutIP(list []v1.QuarantinedIP, ip string) []v1.QuarantinedIP {
	var out []v1.QuarantinedIP
	for _, q := range list {
		if q.IP != ip {
			out = append(out, q)
		}
	}
	return out
}
