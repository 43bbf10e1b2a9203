package controller

import (
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/types"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/core/allocator"
)

// DefaultCountsInterval is how often at most a pool's status (its counts, its conditions)
// is written when its allocation state keeps changing.
const DefaultCountsInterval = 2 * time.Second

// countsMirror remembers when each pool's status was last written, so that a pool whose
// PoolAllocation changes many times a second gets one IPPool write per interval: every
// such write is an event on every node. The last state always goes out, once the
// interval since the previous write has passed (the reconciler requeues for it).
type countsMirror struct {
	// interval between two writes of one pool's status (zero: DefaultCountsInterval)
	interval time.Duration
	// clock tells the time (nil: time.Now); tests move it
	clock func() time.Time

	mu   sync.Mutex
	last map[types.UID]time.Time
}

func (m *countsMirror) now() time.Time {
	if m.clock != nil {
		return m.clock()
	}
	return time.Now()
}

func (m *countsMirror) every() time.Duration {
	if m.interval > 0 {
		return m.interval
	}
	return DefaultCountsInterval
}

// wait is how long the pool's status must still wait before it is written again (zero:
// it may be written now).
func (m *countsMirror) wait(uid types.UID, now time.Time) time.Duration {
	m.mu.Lock()
	defer m.mu.Unlock()
	last, ok := m.last[uid]
	if !ok {
		return 0
	}
	return max(0, last.Add(m.every()).Sub(now))
}

func (m *countsMirror) wrote(uid types.UID, now time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.last == nil {
		m.last = map[types.UID]time.Time{}
	}
	m.last[uid] = now
}

// keep forgets the pools not listed (deleted): the memory lasts no longer than the pool.
func (m *countsMirror) keep(pools []v1.IPPool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	live := make(map[types.UID]bool, len(pools))
	for i := range pools {
		live[pools[i].UID] = true
	}
	for uid := range m.last {
		if !live[uid] {
			delete(m.last, uid)
		}
	}
}

// shownState is the state whose counts the pool's status shows: its PoolAllocation's,
// with the total the pool's spec gives now (a pool nobody allocated from yet has no
// PoolAllocation, and a grown pool's state keeps the old total until its next write).
func shownState(pool *v1.IPPool, state v1.AllocationState) v1.AllocationState {
	if view, err := allocator.NewPool(pool.Name, &pool.Spec); err == nil {
		state.SetCounts(view.TotalCount(), state.AllocatedIPCount)
	}
	return state
}

// heldOutsideSpec is what the pool's state holds that its spec no longer covers (a spec
// narrowed past the webhook), as offsets of its subnet: pods still hold those addresses,
// and every ipamd keeps them out of the other pools (store/overlap.go reads it from the
// status, as no node reads another pool's state). A state that does not parse, or runs
// past the subnet, is shown as it is: ipamd then blocks the pool's whole subnet.
func heldOutsideSpec(pool *v1.IPPool, state *v1.AllocationState) string {
	if state.Allocated == "" {
		return ""
	}
	fp, ok := allocator.FootprintOf(pool.Name, &pool.Spec)
	if !ok || fp.All {
		return "" // the whole subnet is the pool's footprint already (or it names none)
	}
	held, err := allocator.ParseAllocated(fp.Prefix, state.Allocated)
	if err != nil {
		return state.Allocated
	}
	return held.Subtract(fp.Set).String()
}
