package importer

import (
	"context"
	"fmt"

	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/core/allocator"
)

// apply writes the plan: Subnets, ReservedIPs, pools (spec, then status), the marks on
// existing pools, then Endpoints. Each object is created once; a re-run after a failure
// finds what was created and leaves it alone.
func (p *importPlan) apply(ctx context.Context, c client.Client) error {
	for _, s := range p.subnets {
		if err := c.Create(ctx, s); err != nil {
			return fmt.Errorf("creating Subnet %s: %w", s.Name, err)
		}
	}
	for _, r := range p.reserved {
		if err := c.Create(ctx, r); err != nil {
			return fmt.Errorf("creating ReservedIP %s: %w", r.Name, err)
		}
	}
	for _, pool := range p.pools {
		if err := createPool(ctx, c, pool); err != nil {
			return err
		}
	}
	for _, m := range p.marks {
		if err := markPool(ctx, c, m); err != nil {
			return err
		}
	}
	for _, ep := range p.endpoints {
		if err := c.Create(ctx, ep); err != nil {
			return fmt.Errorf("creating Endpoint %s/%s: %w: run the import again to finish", ep.Namespace, ep.Name, err)
		}
	}
	return nil
}

// createPool creates the pool, then writes its status (the status subresource ignores
// a create's status).
func createPool(ctx context.Context, c client.Client, pool *v1.IPPool) error {
	status := pool.Status
	if err := c.Create(ctx, pool); err != nil {
		return fmt.Errorf("creating IPPool %s: %w", pool.Name, err)
	}
	pool.Status = status
	if err := c.Status().Update(ctx, pool); err != nil {
		return fmt.Errorf("writing IPPool %s status (allocated %s): %w: run the import again to finish", pool.Name, status.Allocated, err)
	}
	return nil
}

// markPool adds offs to an existing pool's status.allocated, on fresh reads until no
// other writer conflicts.
func markPool(ctx context.Context, c client.Client, m poolMark) error {
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		pool := &v1.IPPool{}
		if err := c.Get(ctx, client.ObjectKey{Name: m.name}, pool); err != nil {
			return err
		}
		set, err := allocator.ParseAllocated(m.prefix, pool.Status.Allocated)
		if err != nil {
			return fmt.Errorf("status.allocated %q does not parse: %w: fix or delete the pool", pool.Status.Allocated, err)
		}
		for _, o := range m.offs {
			set.Add(o)
		}
		pool.Status.Allocated, pool.Status.AllocatedIPCount = set.String(), int64(set.Count())
		return c.Status().Update(ctx, pool)
	})
	if err != nil {
		return fmt.Errorf("marking addresses in IPPool %s: %w: run the import again to finish", m.name, err)
	}
	return nil
}
