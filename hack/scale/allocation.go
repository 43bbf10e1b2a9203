package main

import (
	"context"
	"fmt"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/core/allocator"
)

// A pool's allocation state lives in its PoolAllocation (same name, the pool's UID), not
// in the IPPool's status, which keeps the counts users read (docs/design.md, "Allocation
// state at 5000 nodes"). The scale runs start no controller, so what it would mirror onto
// the IPPool is written here too.

// writeAllocation sets pool's allocation state to allocated (runs of offsets, as
// state.allocated holds them) before any ipamd allocates from it: it creates the pool's
// PoolAllocation, then shows its counts on the IPPool as the controller would.
func writeAllocation(ctx context.Context, c client.Client, pool *v1.IPPool, allocated string) error {
	view, err := allocator.NewPool(pool.Name, &pool.Spec)
	if err != nil {
		return fmt.Errorf("pool %s spec: %w", pool.Name, err)
	}
	set, err := view.ParseAllocated(allocated)
	if err != nil {
		return fmt.Errorf("pool %s allocated %q: %w", pool.Name, allocated, err)
	}
	alloc := v1.AllocationOf(pool)
	alloc.State.Allocated = set.String()
	alloc.State.SetCounts(view.TotalCount(), int64(set.Count()))
	if err := c.Create(ctx, alloc); err != nil {
		return fmt.Errorf("pool %s PoolAllocation: %w", pool.Name, err)
	}
	pool.Status.ShowCounts(&alloc.State)
	if err := c.Status().Update(ctx, pool); err != nil {
		return fmt.Errorf("pool %s status counts: %w", pool.Name, err)
	}
	return nil
}

// allocationState reads pool name's allocation state from the API: empty when it has no
// PoolAllocation or only an earlier incarnation's (v1.StateOf).
func allocationState(ctx context.Context, c client.Reader, name string) (v1.AllocationState, error) {
	var pool v1.IPPool
	if err := c.Get(ctx, client.ObjectKey{Name: name}, &pool); err != nil {
		return v1.AllocationState{}, fmt.Errorf("pool %s: %w", name, err)
	}
	var alloc v1.PoolAllocation
	if err := c.Get(ctx, client.ObjectKey{Name: name}, &alloc); err != nil {
		if client.IgnoreNotFound(err) == nil {
			return v1.AllocationState{}, nil
		}
		return v1.AllocationState{}, fmt.Errorf("pool %s PoolAllocation: %w", name, err)
	}
	return v1.StateOf(&pool, &alloc), nil
}

// settledState is allocationState once the pool holds nothing, or after 10 s: ipamd
// answers a DEL once its record is gone and frees the address just after, so a free in
// flight is waited for and a leak is still reported.
func settledState(ctx context.Context, c client.Reader, name string) (v1.AllocationState, error) {
	deadline := time.Now().Add(10 * time.Second)
	for {
		st, err := allocationState(ctx, c, name)
		if err != nil || st.AllocatedIPCount == 0 || time.Now().After(deadline) {
			return st, err
		}
		time.Sleep(100 * time.Millisecond)
	}
}
