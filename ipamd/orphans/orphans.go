// Package orphans frees pool addresses that no Endpoint holds: left by a crash between
// the pool commit and the Endpoint write. Exactly one sweeper may run in a cluster (the
// elected controller): it alone frees orphans, so an address it saw unheld cannot be
// freed by someone else, handed out again and then freed a second time by it.
//
// Being the one sweeper is a lease, and a lease can be lost at any moment: the sweep
// honours its context everywhere, checks it before every write, and writes with it, so a
// controller that lost its lease frees nothing more from the snapshot it was working on.
//
// What the sweeper remembers is an allocation, not a bare address: "unheld since" is keyed
// by the pool's UID (a pool deleted and made again under the same name starts afresh) and
// the address, and an entry is forgotten whenever the address is seen held or seen free in
// between, at a sweep or in any pool status the informer delivers (Observe). An address
// freed and handed out again between two sweeps therefore starts a new clock: the new
// allocation's Endpoint write gets the whole grace period, not what was left of the old
// one's. (The pool status has no per-allocation generation to key by; the status writes
// the watch delivers are the evidence. A watch gap, a relist after compaction, can hide a
// free and re-allocation; the uncached Endpoint read before freeing still covers any
// allocation whose Endpoint was written by then.)
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
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/underpool/underpool/ipamd/allocator"
	v1 "github.com/underpool/underpool/ipamd/api/v1"
)

// heldKey names an address of a pool by name, as Endpoints record it.
type heldKey struct {
	pool string
	addr netip.Addr
}

// Sweeper remembers since when each unheld allocation has been seen unheld.
type Sweeper struct {
	// Writer writes pool status: one resourceVersion-guarded update per pool and sweep.
	Writer client.Client
	Cache  client.Reader // informer-backed reads of IPPools and Endpoints
	// API reads Endpoints and the pool uncached before anything is freed: a cache is
	// never evidence that an address is unheld (an Endpoint written a moment ago may not
	// be in it).
	API client.Reader
	Log *zap.Logger
	// Found counts orphans confirmed by the uncached read, Freed those written free,
	// Unheld is the allocations seen unheld at the last sweep (any may be nil).
	Found  prometheus.Counter
	Freed  prometheus.Counter
	Unheld prometheus.Gauge

	mu    sync.Mutex
	since map[types.UID]map[netip.Addr]time.Time // pool UID -> address -> first seen unheld
}

// Observe forgets what the sweeper remembered of a pool's addresses that this status shows
// free: whatever holds them next is a new allocation. Wire it to the IPPool informer's
// add and update events; Forget to its delete events.
func (s *Sweeper) Observe(pool *v1.IPPool) {
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
	allocated, err := view.ParseAllocated(pool.Status.Allocated) // offsets outside the pool: corrupt, never iterated
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
}

// Sweep frees pool addresses that no Endpoint holds. An address is committed to its pool
// a moment before its Endpoint is written (and rolled back within the request timeout if
// that fails), so only an allocation seen unheld for longer than grace, in two sweeps, is
// an orphan. It stops, freeing nothing more, as soon as ctx ends.
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
	due := s.note(list.Items, held, now, grace)
	if len(due) == 0 {
		return 0, nil
	}
	// the uncached view, read once per sweep and only when something is due
	confirmed, err := s.heldNow(ctx)
	if err != nil {
		return 0, err
	}
	freed := 0
	for _, pool := range sortedPools(due) {
		if err := ctx.Err(); err != nil {
			return freed, fmt.Errorf("sweep stopped (%w): nothing more freed", err)
		}
		n, err := s.free(ctx, pool, due[pool], confirmed, now)
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

// note updates the memory from one snapshot and returns the allocations unheld for at
// least grace, by pool. Everything seen held or free is forgotten.
func (s *Sweeper) note(pools []v1.IPPool, held map[heldKey]bool, now time.Time, grace time.Duration) map[poolRef][]netip.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.since == nil {
		s.since = map[types.UID]map[netip.Addr]time.Time{}
	}
	next := map[types.UID]map[netip.Addr]time.Time{}
	due := map[poolRef][]netip.Addr{}
	for i := range pools {
		pool := &pools[i]
		view, err := allocator.NewPool(pool.Name, &pool.Spec)
		if err != nil {
			continue
		}
		allocated, err := view.ParseAllocated(pool.Status.Allocated) // offsets outside the pool: corrupt, never iterated
		if err != nil {
			continue
		}
		known := s.since[pool.UID]
		seen := map[netip.Addr]time.Time{}
		for _, run := range allocated.Runs() {
			for o := run.Lo; ; o++ {
				addr := view.Addr(o)
				if !held[heldKey{pool.Name, addr}] {
					since, ok := known[addr]
					if !ok {
						since = now
					}
					seen[addr] = since
					if now.Sub(since) >= grace && ok {
						ref := poolRef{pool.Name, pool.UID}
						due[ref] = append(due[ref], addr)
					}
				}
				if o == run.Hi {
					break
				}
			}
		}
		if len(seen) > 0 {
			next[pool.UID] = seen
		}
	}
	s.since = next // what was not seen unheld now (held, free, pool gone) is forgotten
	if s.Unheld != nil {
		unheld := 0
		for _, seen := range next {
			unheld += len(seen)
		}
		s.Unheld.Set(float64(unheld))
	}
	return due
}

// free releases a pool's due addresses that the API confirms unheld, in one write guarded
// by the resourceVersion of a fresh read of the pool: a conflict or a changed pool frees
// nothing this round.
func (s *Sweeper) free(ctx context.Context, ref poolRef, addrs []netip.Addr, confirmed map[heldKey]bool, now time.Time) (int, error) {
	pool := &v1.IPPool{}
	if err := s.API.Get(ctx, client.ObjectKey{Name: ref.name}, pool); err != nil {
		if apierrors.IsNotFound(err) {
			return 0, nil
		}
		return 0, fmt.Errorf("reading IPPool %s: %w", ref.name, err)
	}
	if pool.UID != ref.uid {
		return 0, nil // made again under the same name: not the allocations we watched
	}
	view, err := allocator.NewPool(pool.Name, &pool.Spec)
	if err != nil {
		return 0, nil
	}
	allocated, err := view.ParseAllocated(pool.Status.Allocated) // offsets outside the pool: corrupt, never iterated
	if err != nil {
		return 0, nil
	}
	var freeing []netip.Addr
	for _, addr := range addrs {
		if confirmed[heldKey{ref.name, addr}] {
			s.forget(ref.uid, addr) // held after all: the cache lagged
			continue
		}
		if o, ok := view.Offset(addr); ok && allocated.Remove(o) {
			freeing = append(freeing, addr)
			if s.Found != nil {
				s.Found.Inc()
			}
		}
	}
	if len(freeing) == 0 {
		return 0, nil
	}
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("sweep stopped (%w) before freeing %d addresses of pool %s", err, len(freeing), ref.name)
	}
	pool.Status.Allocated = allocated.String()
	pool.Status.SetCounts(view.TotalCount(), int64(allocated.Count()))
	if err := s.Writer.Status().Update(ctx, pool); err != nil {
		if apierrors.IsConflict(err) {
			s.Log.Info("pool changed while freeing orphans; the next sweep looks again", zap.String("pool", ref.name))
			return 0, nil
		}
		return 0, fmt.Errorf("freeing orphans of pool %s: %w", ref.name, err)
	}
	for _, addr := range freeing {
		s.Log.Warn("freed an orphan address no Endpoint held", zap.String("pool", ref.name), zap.String("ip", addr.String()),
			zap.Duration("unheldFor", now.Sub(s.sinceOf(ref.uid, addr, now))))
		s.forget(ref.uid, addr)
		if s.Freed != nil {
			s.Freed.Inc()
		}
	}
	return len(freeing), nil
}

func (s *Sweeper) forget(uid types.UID, addr netip.Addr) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.since[uid], addr)
}

func (s *Sweeper) sinceOf(uid types.UID, addr netip.Addr, now time.Time) time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	if t, ok := s.since[uid][addr]; ok {
		return t
	}
	return now
}

func sortedPools(due map[poolRef][]netip.Addr) []poolRef {
	refs := make([]poolRef, 0, len(due))
	for ref := range due {
		refs = append(refs, ref)
	}
	sort.Slice(refs, func(i, j int) bool { return refs[i].name < refs[j].name })
	return refs
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
