// Package orphans frees pool addresses that no Endpoint holds: left by a crash between
// the pool commit and the Endpoint write. Exactly one sweeper may run in a cluster (the
// elected controller): it alone frees orphans, so an address it saw unheld cannot be
// freed by someone else, handed out again and then freed a second time by it.
package orphans

import (
	"context"
	"net/netip"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/underpool/underpool/ipamd/allocator"
	v1 "github.com/underpool/underpool/ipamd/api/v1"
	"github.com/underpool/underpool/ipamd/store"
)

// orphanKey names one address of one pool.
type orphanKey struct {
	pool string
	addr netip.Addr
}

// Sweeper remembers since when each unheld address has been seen unheld.
type Sweeper struct {
	Pools *store.PoolCommitter
	Cache client.Reader // informer-backed reads of IPPools and Endpoints
	// API reads Endpoints uncached before anything is freed: a cache is never evidence
	// that an address is unheld (an Endpoint written a moment ago may not be in it).
	API   client.Reader
	Log   *zap.Logger
	Freed prometheus.Counter
	mu    sync.Mutex
	since map[orphanKey]time.Time
}

// Sweep frees pool addresses that no Endpoint holds. An address is committed to its pool
// a moment before its Endpoint is written (and rolled back within the request timeout if
// that fails), so only an address seen unheld for longer than grace, in two sweeps, is an
// orphan.
func (s *Sweeper) Sweep(ctx context.Context, now time.Time, grace time.Duration) (int, error) {
	var eps v1.EndpointList
	if err := s.Cache.List(ctx, &eps, client.UnsafeDisableDeepCopy); err != nil {
		return 0, err
	}
	held := heldBy(eps.Items)
	// confirmed is the uncached view, read once per sweep and only when something is due
	var confirmed map[orphanKey]bool
	confirm := func(key orphanKey) (bool, error) {
		if s.API == nil {
			return !held[key], nil
		}
		if confirmed == nil {
			var fresh v1.EndpointList
			if err := s.API.List(ctx, &fresh); err != nil {
				return false, err
			}
			confirmed = heldBy(fresh.Items)
		}
		return !confirmed[key], nil
	}
	var list v1.IPPoolList
	if err := s.Cache.List(ctx, &list, client.UnsafeDisableDeepCopy); err != nil {
		return 0, err
	}
	pools := list.Items
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.since == nil {
		s.since = map[orphanKey]time.Time{}
	}
	seen := map[orphanKey]bool{}
	freed := 0
	for i := range pools {
		pool := &pools[i]
		view, err := allocator.NewPool(pool.Name, &pool.Spec)
		if err != nil {
			continue
		}
		allocated, err := allocator.ParseRunSet(pool.Status.Allocated)
		if err != nil {
			continue
		}
		for _, run := range allocated.Runs() {
			for o := run.Lo; ; o++ {
				key := orphanKey{pool.Name, view.Addr(o)}
				if !held[key] {
					seen[key] = true
					since, known := s.since[key]
					switch {
					case !known:
						s.since[key] = now
					case now.Sub(since) >= grace:
						unheld, err := confirm(key)
						if err != nil {
							return freed, err
						}
						if !unheld {
							delete(s.since, key) // held after all: the cache lagged
							break
						}
						if err := s.Pools.Release(ctx, pool.Name, key.addr); err != nil {
							return freed, err
						}
						freed++
						delete(s.since, key)
						if s.Freed != nil {
							s.Freed.Inc()
						}
						s.Log.Warn("freed an orphan address no Endpoint held", zap.String("pool", pool.Name), zap.String("ip", key.addr.String()), zap.Duration("unheldFor", now.Sub(since)))
					}
				}
				if o == run.Hi {
					break
				}
			}
		}
	}
	for key := range s.since {
		if !seen[key] {
			delete(s.since, key)
		}
	}
	return freed, nil
}

// heldBy returns every (pool, address) the Endpoints hold, detached ones included.
func heldBy(eps []v1.Endpoint) map[orphanKey]bool {
	held := map[orphanKey]bool{}
	for _, ep := range eps {
		for _, itf := range ep.Status.Interfaces {
			for _, ip := range itf.IPs {
				if p, err := netip.ParsePrefix(ip.Address); err == nil {
					held[orphanKey{ip.Pool, p.Addr()}] = true
				}
			}
		}
	}
	return held
}
