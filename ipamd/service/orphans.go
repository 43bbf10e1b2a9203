package service

import (
	"context"
	"net/netip"
	"time"

	"go.uber.org/zap"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/underpool/underpool/ipamd/allocator"
	v1 "github.com/underpool/underpool/ipamd/api/v1"
)

// orphanKey names one address of one pool.
type orphanKey struct {
	pool string
	addr netip.Addr
}

// SweepOrphans frees pool addresses that no Endpoint holds. An address is committed to
// its pool a moment before its Endpoint is written (and rolled back within the request
// timeout if that fails), so only an address seen unheld for longer than grace, in two
// sweeps, is an orphan: left by a crash between the two writes.
func (s *Service) SweepOrphans(ctx context.Context, now time.Time, grace time.Duration) (int, error) {
	var eps v1.EndpointList
	if err := s.Endpoints.Cache.List(ctx, &eps, client.UnsafeDisableDeepCopy); err != nil {
		return 0, err
	}
	held := map[orphanKey]bool{}
	for _, ep := range eps.Items {
		for _, itf := range ep.Status.Interfaces {
			for _, ip := range itf.IPs {
				if p, err := netip.ParsePrefix(ip.Address); err == nil {
					held[orphanKey{ip.Pool, p.Addr()}] = true
				}
			}
		}
	}
	pools, err := s.Cluster.Pools(ctx)
	if err != nil {
		return 0, err
	}
	s.orphanMu.Lock()
	defer s.orphanMu.Unlock()
	if s.orphanSince == nil {
		s.orphanSince = map[orphanKey]time.Time{}
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
					since, known := s.orphanSince[key]
					switch {
					case !known:
						s.orphanSince[key] = now
					case now.Sub(since) >= grace:
						if err := s.Pools.Release(ctx, pool.Name, key.addr); err != nil {
							return freed, err
						}
						freed++
						delete(s.orphanSince, key)
						s.Metrics.Orphans.Inc()
						s.Log.Warn("freed an orphan address no Endpoint held", zap.String("pool", pool.Name), zap.String("ip", key.addr.String()), zap.Duration("unheldFor", now.Sub(since)))
					}
				}
				if o == run.Hi {
					break
				}
			}
		}
	}
	for key := range s.orphanSince {
		if !seen[key] {
			delete(s.orphanSince, key)
		}
	}
	return freed, nil
}
