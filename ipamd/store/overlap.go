package store

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"sync"

	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/core/allocator"
)

// Overlapping pools: an address that two existing IPPools could both hand out is handed
// out by neither. This is the guarantee, level-triggered; the webhook only keeps most
// overlaps from being written, and cannot do more: two concurrent creates both pass its
// check-then-act, and pools written while it was down or unregistered never met it.
//
// Rule: every commit that allocates from pool P blocks the footprint of every other existing
// pool, being deleted or not, that meets P's subnet: what its spec lets it hand out
// (allocator.Footprint: spec.ips minus excludeIPs minus gateway, or the whole subnet when
// the spec does not parse) plus what its status says its state holds outside its spec
// (status.heldOutsideSpec, kept by the controller: a spec narrowed past the webhook does
// not free what pods still hold; a value that does not parse covers the whole subnet).
// Allocation states are not watched by nodes, so the held addresses come from the IPPool.
//
// Why it is enough. Say pool versions A and B overlap and B's was written after A's
// (the later write is the one that made the overlap: a create, or a spec update). An
// informer delivers one resource type's events in resourceVersion order, so an ipamd whose
// cache holds B's version holds A's version too (or a later one), and blocks the overlap:
// B never hands out a shared address. An ipamd that has not seen B yet may still hand out
// a shared address from A; it is then marked in A's state, and B blocks it for as long as
// both exist. Once that ipamd learns of B, A stops handing out the overlap as well. So
// every shared address is handed out by A alone, and only before B became visible.
//
// The argument needs the other pools to be read from a view at least as new as the spec
// being served. The commit's spec comes from the informer, except when the informer lags
// it (a pool created or edited moments ago, read from the API or from this process' own
// later write): then the other pools are listed from the API too (specCached false).
//
// Cost: one list from the informer per commit (pools are few, commits are many), a prefix
// check per pool, and each overlapping pool's footprint parsed once per generation.
func (p *PoolCommitter) blocked(ctx context.Context, pool *allocator.PoolView, specCached bool) (allocator.RunSet, error) {
	var runs []allocator.Run
	if p.reserved != nil {
		reserved, err := p.reserved(ctx, pool)
		if err != nil {
			return allocator.RunSet{}, err
		}
		runs = append(runs, reserved.Runs()...)
	}
	reader := p.cache
	if !specCached {
		reader = p.api
	}
	var list v1.IPPoolList
	if err := reader.List(ctx, &list, client.UnsafeDisableDeepCopy); err != nil {
		return allocator.RunSet{}, fmt.Errorf("listing IPPools to keep addresses other pools share out of allocation: %w", err)
	}
	for _, other := range p.footprints.overlapping(list.Items, pool) {
		runs = append(runs, other.In(pool.Prefix).Runs()...)
	}
	// merged in order, so many pools carved from one Subnet cost a sort, not a quadratic
	// series of inserts
	slices.SortFunc(runs, func(a, b allocator.Run) int { return cmp.Compare(a.Lo, b.Lo) })
	return allocator.NewRunSet(runs...), nil
}

// footprintCache keeps each pool's footprint: the spec's per generation (spec changes bump
// it), with what its status holds per resourceVersion.
type footprintCache struct {
	mu    sync.Mutex
	byUID map[types.UID]footprintEntry
}

type footprintEntry struct {
	gen  int64
	spec allocator.Footprint // what the spec covers
	ok   bool                // false: not even spec.subnet parses, the pool covers nothing
	rv   string
	fp   allocator.Footprint // spec plus status.heldOutsideSpec
}

// overlapping returns the footprints of the pools, other than pool, that meet its subnet.
func (c *footprintCache) overlapping(pools []v1.IPPool, pool *allocator.PoolView) []allocator.Footprint {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.byUID == nil || len(c.byUID) > 2*len(pools)+16 {
		c.byUID = map[types.UID]footprintEntry{} // drop the footprints of deleted pools
	}
	var out []allocator.Footprint
	for i := range pools {
		o := &pools[i]
		if o.Name == pool.Name {
			continue
		}
		e, hit := c.byUID[o.UID]
		if !hit || e.gen != o.Generation || o.Generation == 0 {
			e.spec, e.ok = allocator.FootprintOf(o.Name, &o.Spec)
			e.gen, e.rv = o.Generation, ""
		}
		if e.ok && e.spec.Prefix.Overlaps(pool.Prefix) { // the cheap check first: most pools are elsewhere
			if e.rv != o.ResourceVersion || o.ResourceVersion == "" {
				e.fp, e.rv = withHeld(e.spec, o.Status.HeldOutsideSpec), o.ResourceVersion
			}
			out = append(out, e.fp)
		}
		if o.UID != "" {
			c.byUID[o.UID] = e
		}
	}
	return out
}

// withHeld adds the offsets the pool holds outside its spec (of its own subnet, as the
// spec footprint's are) to its footprint; a value that does not parse makes it cover the
// whole subnet.
func withHeld(spec allocator.Footprint, allocated string) allocator.Footprint {
	if allocated == "" || spec.All {
		return spec
	}
	held, err := allocator.ParseAllocated(spec.Prefix, allocated) // offsets past the subnet: corrupt
	if err != nil {
		return allocator.Footprint{Prefix: spec.Prefix, All: true}
	}
	fp := allocator.Footprint{Prefix: spec.Prefix, Set: spec.Set.Clone()}
	for _, r := range held.Runs() {
		fp.Set.AddRun(r)
	}
	return fp
}
