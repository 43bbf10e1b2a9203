package store

import (
	"context"
	"fmt"
	"sync"

	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/underpool/underpool/ipamd/allocator"
	v1 "github.com/underpool/underpool/ipamd/api/v1"
)

// Overlapping pools: an address that two existing IPPools could both hand out is handed
// out by neither. This is the guarantee, level-triggered; the webhook only keeps most
// overlaps from being written, and cannot do more: two concurrent creates both pass its
// check-then-act, and pools written while it was down or unregistered never met it.
//
// Rule: every commit that allocates from pool P blocks the footprint (allocator.Footprint:
// spec.ips minus excludeIPs minus gateway, or the whole subnet when the spec does not
// parse) of every other existing pool, being deleted or not, that meets P's subnet.
//
// Why it is enough. Say pool versions A and B overlap and B's was written after A's
// (the later write is the one that made the overlap: a create, or a spec update). An
// informer delivers one resource type's events in resourceVersion order, so an ipamd whose
// cache holds B's version holds A's version too (or a later one), and blocks the overlap:
// B never hands out a shared address. An ipamd that has not seen B yet may still hand out
// a shared address from A; it is then marked in A's status, and B blocks it for as long as
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
func (p *Pools) blocked(ctx context.Context, pool *allocator.Pool, specCached bool) (allocator.RunSet, error) {
	var out allocator.RunSet
	if p.Blocked != nil {
		reserved, err := p.Blocked(ctx, pool)
		if err != nil {
			return allocator.RunSet{}, err
		}
		out = reserved.Clone()
	}
	reader := p.Cache
	if !specCached {
		reader = p.API
	}
	var list v1.IPPoolList
	if err := reader.List(ctx, &list, client.UnsafeDisableDeepCopy); err != nil {
		return allocator.RunSet{}, fmt.Errorf("listing IPPools to keep addresses other pools share out of allocation: %w", err)
	}
	for _, other := range p.footprints.overlapping(list.Items, pool) {
		for _, r := range other.In(pool.Prefix).Runs() {
			out.AddRun(r)
		}
	}
	return out, nil
}

// footprintCache keeps each pool's footprint per generation (spec changes bump it).
type footprintCache struct {
	mu    sync.Mutex
	byUID map[types.UID]footprintEntry
}

type footprintEntry struct {
	gen int64
	fp  allocator.Footprint
	ok  bool
}

// overlapping returns the footprints of the pools, other than pool, that meet its subnet.
func (c *footprintCache) overlapping(pools []v1.IPPool, pool *allocator.Pool) []allocator.Footprint {
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
			e.fp, e.ok = allocator.FootprintOf(o.Name, &o.Spec)
			e.gen = o.Generation
			if o.UID != "" {
				c.byUID[o.UID] = e
			}
		}
		if e.ok && e.fp.Prefix.Overlaps(pool.Prefix) {
			out = append(out, e.fp)
		}
	}
	return out
}
