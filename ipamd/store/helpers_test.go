package store

import (
	"context"
	"net/netip"

	"github.com/underpool/underpool/core/allocator"
)

// allocate and release call the committer the way the service did before releases
// carried their evidence: tests of the queue alone need no window.
func allocate(p *PoolCommitter, ctx context.Context, pool string) (netip.Prefix, *allocator.PoolView, error) {
	g, err := p.Allocate(ctx, pool)
	return g.Addr, g.Pool, err
}

func release(p *PoolCommitter, ctx context.Context, pool string, addr netip.Addr) error {
	return p.Release(ctx, Free{Pool: pool, Addr: addr, Evidence: p.now()})
}
