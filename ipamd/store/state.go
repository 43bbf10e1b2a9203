package store

import (
	"context"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/underpool/underpool/api/v1"
)

// ReadState reads a pool's allocation state through r (uncached, for a decision that
// must see the newest): none, or one left by an earlier pool of the same name, holds
// nothing (v1.StateOf).
func ReadState(ctx context.Context, r client.Reader, pool *v1.IPPool) (v1.AllocationState, error) {
	alloc := &v1.PoolAllocation{}
	if err := r.Get(ctx, client.ObjectKey{Name: pool.Name}, alloc); err != nil {
		if apierrors.IsNotFound(err) {
			return v1.AllocationState{}, nil
		}
		return v1.AllocationState{}, fmt.Errorf("reading PoolAllocation %s: %w", pool.Name, err)
	}
	return v1.StateOf(pool, alloc), nil
}
