// Package orphans frees pool addresses that no Endpoint holds: left by a crash between
// the pool commit and the Endpoint write, or between the Endpoint write that dropped a
// record and the pool release, or by a free whose commit window closed. Exactly one
// sweeper runs in a cluster (the elected controller). Being the sweeper is a lease, and
// a lease can be lost at any moment: the sweep honours its context everywhere, checks it
// before every write, and writes with it.
//
// An address allocated in its pool and held by no Endpoint is not yet an orphan: its
// allocation's Endpoint write may still be on its way, or its holder's release may. The
// release protocol (docs/design.md) bounds both by the commit window W: such writes take
// effect within W of their evidence or never. The sweeper frees in three phases, each in
// one resourceVersion-guarded write or read:
//
//  1. mark: an address seen unheld (informer and API) for the grace period is added to
//     state.reclaiming of the pool's PoolAllocation. Every release of the address drops the mark in the
//     same write that frees it, so while the mark stays, the address has been allocated
//     without a break since: it is the same allocation, not one handed out again.
//  2. confirm: at least W after the mark, the API shows it unheld still. No Endpoint can
//     claim it any more: its allocation's own Endpoint write took effect by then or never
//     will, and nobody else can be given a marked (allocated) address.
//  3. free: at least W after the confirmation, the mark still there, the address is freed
//     and unmarked. Its holder's release, if a holder ever had it, was planned within W/2
//     of dropping its record, before the confirmation; a release planned on state read
//     after this free would be planned after its window closed, so it never is. A late
//     free therefore cannot free the address again once it is handed out anew.
//
// Times count from the first sweep that starts after a mark or a confirmation was seen,
// so a sweep's own reads and writes never shorten a phase. A new leader starts every
// phase afresh; that only delays a reclaim.
//
// The allocation state lives in the pool's PoolAllocation (same name, naming the pool's
// UID; v1.StateOf): a pool without one, or with one left by an earlier pool of its name,
// has nothing allocated and nothing to sweep. Every write is an Update of the
// PoolAllocation guarded by the resourceVersion read, as ipamd's are, so a mark still
// proves one allocation and a free still proves its owner.
//
// The package owns the Sweeper: its memory of addresses seen unheld, fed by the
// PoolAllocation informer (Observe) and the pool informer (Forget); the read of what
// every Endpoint holds, from the cache and then the API (orphans.go); the phase clocks
// (phases.go); and each pool's one guarded PoolAllocation write per sweep (step.go). The loop that calls Sweep on its interval, on the
// elected replica only, and the series it counts on are the controller's
// (controller/orphanloop.go).
package orphans

import (
	"context"
	"fmt"
	"net/netip"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/core/allocator"
	"github.com/underpool/underpool/ipamd/store"
)

// heldKey names an address of a pool by name, as Endpoints record it.
type heldKey struct {
	pool string
	addr netip.Addr
}

// Sweeper remembers since when each unheld allocation has been seen unheld, and where
// each of its marks stands.
type Sweeper struct {
	// Writer writes PoolAllocations: one resourceVersion-guarded update per pool and sweep.
	Writer client.Client
	Cache  client.Reader // informer-backed reads of IPPools, PoolAllocations and Endpoints
	// API reads Endpoints, the pool and its PoolAllocation uncached before anything is
	// marked, confirmed or freed: a cache is never evidence that an address is unheld (an
	// Endpoint written a moment ago may not be in it).
	API client.Reader
	Log *zap.Logger
	// Window is the release protocol's bound (zero: store.DefaultWindow); it must be
	// the same as every ipamd's. The phases are spaced a whole window apart.
	Window store.Window
	// Found counts orphans confirmed by the uncached read, Freed those written free,
	// Unheld is the allocations seen unheld at the last sweep, marked or not (any may be nil).
	Found  prometheus.Counter
	Freed  prometheus.Counter
	Unheld prometheus.Gauge

	mu    sync.Mutex
	since map[types.UID]map[netip.Addr]time.Time // pool UID -> address -> first seen unheld
	marks map[types.UID]map[netip.Addr]*markClock
}

// markClock is where one mark stands. A time is zero until the first sweep that starts
// after the event was seen: that sweep's start is certainly later than the event.
type markClock struct {
	seen, confirmed             time.Time
	seenPending, confirmPending bool
}

// Observe forgets what the sweeper remembered of a pool's unmarked addresses that this
// state shows free: whatever holds them next is a new allocation. Wire it to the
// PoolAllocation informer's add and update events, with the pool of the same name;
// Forget to the IPPool informer's delete events.
func (s *Sweeper) Observe(pool *v1.IPPool, alloc *v1.PoolAllocation) {
	if alloc == nil || alloc.PoolUID != pool.UID {
		return // an earlier pool's state: nothing of this pool
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	known := s.since[pool.UID]
	if len(known) == 0 {
		return
	}
	view, err := allocator.NewPool(pool.Name, &pool.Spec)
	if err != nil {
		return
	}
	allocated, err := view.ParseAllocated(alloc.State.Allocated) // offsets outside the pool: corrupt, never iterated
	if err != nil {
		return
	}
	for addr := range known {
		if o, ok := view.Offset(addr); !ok || !allocated.Contains(o) {
			delete(known, addr)
		}
	}
}

// Forget drops all memory of a pool (it was deleted).
func (s *Sweeper) Forget(uid types.UID) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.since, uid)
	delete(s.marks, uid)
}

// Sweep takes every phase one step: it marks allocations unheld for longer than grace
// (seen in two sweeps at least), confirms marks a window old, and frees confirmed marks a
// window after their confirmation. It stops, writing nothing more, as soon as ctx ends.
// It returns how many addresses it freed.
func (s *Sweeper) Sweep(ctx context.Context, now time.Time, grace time.Duration) (int, error) {
	var eps v1.EndpointList
	if err := s.Cache.List(ctx, &eps, client.UnsafeDisableDeepCopy); err != nil {
		return 0, err
	}
	held := heldBy(eps.Items)
	var list v1.IPPoolList
	if err := s.Cache.List(ctx, &list, client.UnsafeDisableDeepCopy); err != nil {
		return 0, err
	}
	var allocs v1.PoolAllocationList
	if err := s.Cache.List(ctx, &allocs, client.UnsafeDisableDeepCopy); err != nil {
		return 0, err
	}
	work := s.note(list.Items, statesOf(list.Items, allocs.Items), held, now, grace)
	if len(work) == 0 {
		return 0, nil
	}
	// the uncached view, read once per sweep and only when something is due
	confirmed, err := s.heldNow(ctx)
	if err != nil {
		return 0, err
	}
	freed := 0
	for _, ref := range sortedPools(work) {
		if err := ctx.Err(); err != nil {
			return freed, fmt.Errorf("sweep stopped (%w): nothing more written", err)
		}
		n, err := s.step(ctx, ref, work[ref], confirmed)
		freed += n
		if err != nil {
			return freed, err
		}
	}
	return freed, nil
}

// listPage bounds one page of the uncached Endpoint list: a cluster's Endpoints in one
// answer would cost the apiserver (and us) their whole size in memory at once.
const listPage = 500

// heldNow reads every Endpoint from the API, page by page, and returns what they hold.
// The pages come from one snapshot, taken after the read began.
func (s *Sweeper) heldNow(ctx context.Context) (map[heldKey]bool, error) {
	held := map[heldKey]bool{}
	for cont := ""; ; {
		var page v1.EndpointList
		if err := s.API.List(ctx, &page, client.Limit(listPage), client.Continue(cont)); err != nil {
			return nil, err
		}
		for k := range heldBy(page.Items) {
			held[k] = true
		}
		if cont = page.Continue; cont == "" {
			return held, nil
		}
	}
}

// poolRef names the pool a due address belongs to.
type poolRef struct {
	name string
	uid  types.UID
}

// poolWork is what a sweep may do to one pool, each item checked again on a fresh read.
type poolWork struct {
	mark, confirm, free, unmark []netip.Addr
}

func sortedPools(work map[poolRef]*poolWork) []poolRef {
	refs := make([]poolRef, 0, len(work))
	for ref := range work {
		refs = append(refs, ref)
	}
	sort.Slice(refs, func(i, j int) bool { return refs[i].name < refs[j].name })
	return refs
}

// statesOf returns each pool's allocation state by pool name: the state of its
// PoolAllocation when that names the pool's UID, none otherwise (nothing to sweep).
func statesOf(pools []v1.IPPool, allocs []v1.PoolAllocation) map[string]v1.AllocationState {
	byName := make(map[string]*v1.PoolAllocation, len(allocs))
	for i := range allocs {
		byName[allocs[i].Name] = &allocs[i]
	}
	states := make(map[string]v1.AllocationState, len(allocs))
	for i := range pools {
		if a := byName[pools[i].Name]; a != nil && a.PoolUID == pools[i].UID {
			states[pools[i].Name] = a.State
		}
	}
	return states
}

// heldBy returns every (pool, address) the Endpoints hold, detached ones included.
func heldBy(eps []v1.Endpoint) map[heldKey]bool {
	held := map[heldKey]bool{}
	for _, ep := range eps {
		for _, itf := range ep.Status.Interfaces {
			for _, ip := range itf.IPs {
				if p, err := netip.ParsePrefix(ip.Address); err == nil {
					held[heldKey{ip.Pool, p.Addr()}] = true
				}
			}
		}
	}
	return held
}
