package orphans

import (
	"net/netip"
	"time"

	"k8s.io/apimachinery/pkg/types"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/core/allocator"
)

// note updates the memory from one snapshot of the informer and returns, by pool, what
// this sweep may do: allocations unheld for at least grace to mark, marks to confirm or
// free, marks of held addresses to drop. Everything seen held or free is forgotten.
func (s *Sweeper) note(pools []v1.IPPool, states map[string]v1.AllocationState, held map[heldKey]bool, now time.Time, grace time.Duration) map[poolRef]*poolWork {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.since == nil {
		s.since = map[types.UID]map[netip.Addr]time.Time{}
		s.marks = map[types.UID]map[netip.Addr]*markClock{}
	}
	nextSince := map[types.UID]map[netip.Addr]time.Time{}
	nextMarks := map[types.UID]map[netip.Addr]*markClock{}
	work := map[poolRef]*poolWork{}
	unheld := 0
	for i := range pools {
		pool := &pools[i]
		state, ok := states[pool.Name]
		if !ok {
			continue // no PoolAllocation of this pool: nothing allocated
		}
		view, err := allocator.NewPool(pool.Name, &pool.Spec)
		if err != nil {
			continue
		}
		allocated, err := view.ParseAllocated(state.Allocated) // offsets outside the pool: corrupt, never iterated
		if err != nil {
			continue
		}
		marked, _ := allocator.ParseRunSet(state.Reclaiming)
		ref := poolRef{pool.Name, pool.UID}
		w := &poolWork{}
		marks := s.noteMarks(view, allocated, marked, s.marks[pool.UID], held, now, w)
		seen := s.noteUnmarked(view, allocated, marked, s.since[pool.UID], held, now, grace, w)
		if len(marks) > 0 {
			nextMarks[pool.UID] = marks
		}
		if len(seen) > 0 {
			nextSince[pool.UID] = seen
		}
		unheld += len(seen) + len(marks)
		if len(w.mark)+len(w.confirm)+len(w.free)+len(w.unmark) > 0 {
			work[ref] = w
		}
	}
	// what was not seen now (held, free, unmarked, pool gone) is forgotten
	s.since, s.marks = nextSince, nextMarks
	if s.Unheld != nil {
		s.Unheld.Set(float64(unheld))
	}
	return work
}

// noteMarks advances the clocks of a pool's marks and says which are due.
func (s *Sweeper) noteMarks(view *allocator.PoolView, allocated, marked allocator.RunSet, known map[netip.Addr]*markClock,
	held map[heldKey]bool, now time.Time, w *poolWork) map[netip.Addr]*markClock {
	spacing := s.Window.Spacing()
	next := map[netip.Addr]*markClock{}
	visit := func(o uint64) {
		addr := view.Addr(o)
		if !allocated.Contains(o) || next[addr] != nil {
			return
		}
		m := known[addr]
		if m == nil {
			m = &markClock{seenPending: true} // counts from the next sweep
		} else {
			m.tick(now)
		}
		next[addr] = m
		switch {
		case held[heldKey{view.Name, addr}]:
			w.unmark = append(w.unmark, addr)
		case !m.confirmed.IsZero() && now.Sub(m.confirmed) >= spacing:
			w.free = append(w.free, addr)
		case m.confirmed.IsZero() && !m.confirmPending && !m.seen.IsZero() && now.Sub(m.seen) >= spacing:
			w.confirm = append(w.confirm, addr)
		}
	}
	for _, run := range marked.Runs() {
		for o := run.Lo; ; o++ {
			visit(o)
			if o == run.Hi {
				break
			}
		}
	}
	// marks this sweeper wrote that the informer has not delivered yet: each step checks
	// its work on a fresh read, and forgets the marks that read no longer shows
	for addr := range known {
		if o, ok := view.Offset(addr); ok {
			visit(o)
		}
	}
	return next
}

// tick turns what was seen during an earlier sweep into this sweep's start time.
func (m *markClock) tick(now time.Time) {
	if m.seenPending {
		m.seen, m.seenPending = now, false
	}
	if m.confirmPending {
		m.confirmed, m.confirmPending = now, false
	}
}

// noteUnmarked keeps, for the allocated addresses without a mark that the informer shows
// unheld, since when; those unheld for grace, in two sweeps at least, are due a mark.
func (s *Sweeper) noteUnmarked(view *allocator.PoolView, allocated, marked allocator.RunSet, known map[netip.Addr]time.Time,
	held map[heldKey]bool, now time.Time, grace time.Duration, w *poolWork) map[netip.Addr]time.Time {
	seen := map[netip.Addr]time.Time{}
	for _, run := range allocated.Runs() {
		for o := run.Lo; ; o++ {
			if addr := view.Addr(o); !marked.Contains(o) && !held[heldKey{view.Name, addr}] {
				since, ok := known[addr]
				if !ok {
					since = now
				}
				seen[addr] = since
				if ok && now.Sub(since) >= grace {
					w.mark = append(w.mark, addr)
				}
			}
			if o == run.Hi {
				break
			}
		}
	}
	return seen
}
