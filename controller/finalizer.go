package controller

import (
	"context"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	v1 "github.com/underpool/underpool/api/v1"
)

// +kubebuilder:rbac:groups=underpool.io,resources=ippools,verbs=update

// PoolProtection keeps a pool with live allocations from being deleted.
const PoolProtection = v1.PoolProtection

// poolFinalizer adds PoolProtection to every pool and lifts it once a deleted pool's
// allocation state is empty and closed.
//
// The pool and its state are two objects, so no single write can both see the state
// empty and let the pool go. The closing write stands in for that: an Update (or Create)
// of the PoolAllocation guarded by the resourceVersion read, which sets Closed on a state
// that holds nothing. ipamd never writes a closed state, so once the write succeeds no
// address can enter it; an ipamd write that lands first makes it conflict, and the state
// is read again (and now holds the address: the finalizer stays).
type poolFinalizer struct {
	c client.Client
	// api reads the PoolAllocation of a pool being deleted (nil: c): uncached, so a
	// conflict is not met again and again on a stale cache
	api client.Reader
}

// holdsNothing reports whether a state shows no address held. state.allocated is what
// ipamd allocates from; the count beside it is derived from it and may lag a hand repair,
// so it is not asked. A corrupt state (one that does not parse, or names offsets outside
// the pool: "1-400000" on a /24) is never empty: the pool stays until it is repaired, as
// its Invalid condition says, and nothing of it is iterated meanwhile.
func holdsNothing(state *v1.AllocationState) bool {
	return state.Allocated == ""
}

func (r *poolFinalizer) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	pool := &v1.IPPool{}
	if err := r.c.Get(ctx, req.NamespacedName, pool); err != nil {
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	switch {
	case pool.DeletionTimestamp == nil && !controllerutil.ContainsFinalizer(pool, PoolProtection):
		controllerutil.AddFinalizer(pool, PoolProtection)
		return reconcile.Result{}, client.IgnoreNotFound(r.c.Update(ctx, pool))
	case pool.DeletionTimestamp != nil && controllerutil.ContainsFinalizer(pool, PoolProtection):
		closed, err := r.close(ctx, pool)
		if err != nil || !closed {
			return reconcile.Result{}, err // still holding: its PoolAllocation's next write reconciles again
		}
		controllerutil.RemoveFinalizer(pool, PoolProtection)
		return reconcile.Result{}, client.IgnoreNotFound(r.c.Update(ctx, pool))
	}
	return reconcile.Result{}, nil
}

// closeAttempts bounds how often close reads again after a write lost a race: each loss
// is another writer's progress (an ipamd's commit), and the next event retries anyway.
const closeAttempts = 5

// close makes the pool's PoolAllocation exist, empty and closed, in one write guarded by
// what it read; it reports false, writing nothing, while the state holds an address.
func (r *poolFinalizer) close(ctx context.Context, pool *v1.IPPool) (bool, error) {
	for range closeAttempts {
		alloc, err := r.readAllocation(ctx, pool.Name)
		if err != nil {
			return false, err
		}
		state := v1.StateOf(pool, alloc)
		if !holdsNothing(&state) {
			return false, nil
		}
		if (alloc == nil || alloc.PoolUID != pool.UID) && pool.Status.AllocationUID != "" {
			// its state was deleted by hand: what it held is unknown, so the pool stays
			return false, nil
		}
		if alloc != nil && alloc.PoolUID == pool.UID && alloc.Closed {
			return true, nil
		}
		err = r.writeClosed(ctx, pool, alloc)
		switch {
		case err == nil:
			return true, nil
		case apierrors.IsConflict(err), apierrors.IsAlreadyExists(err), apierrors.IsNotFound(err):
			continue // another write came first: read what it left
		default:
			return false, fmt.Errorf("closing the PoolAllocation of deleted IPPool %s: %w", pool.Name, err)
		}
	}
	return false, fmt.Errorf("closing the PoolAllocation of deleted IPPool %s: it changed under %d writes in a row; its next change retries", pool.Name, closeAttempts)
}

func (r *poolFinalizer) readAllocation(ctx context.Context, name string) (*v1.PoolAllocation, error) {
	api := r.api
	if api == nil {
		api = r.c
	}
	alloc := &v1.PoolAllocation{}
	if err := api.Get(ctx, client.ObjectKey{Name: name}, alloc); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("reading PoolAllocation %s: %w", name, err)
	}
	return alloc, nil
}

// writeClosed writes the empty, closed state of the pool over alloc (the read; nil: none
// exists): an Update guarded by its resourceVersion, a Create when there is none, and an
// earlier pool's state (another PoolUID) deleted on its resourceVersion first.
func (r *poolFinalizer) writeClosed(ctx context.Context, pool *v1.IPPool, alloc *v1.PoolAllocation) error {
	if alloc != nil && alloc.PoolUID == pool.UID {
		alloc.Closed, alloc.State = true, v1.AllocationState{}
		return r.c.Update(ctx, alloc)
	}
	if alloc != nil {
		rv, uid := alloc.ResourceVersion, alloc.UID
		if err := r.c.Delete(ctx, alloc, client.Preconditions{ResourceVersion: &rv, UID: &uid}); err != nil {
			return err
		}
	}
	closed := v1.AllocationOf(pool)
	closed.Closed, closed.State = true, v1.AllocationState{}
	return r.c.Create(ctx, closed)
}

// PoolFinalizer is the reconciler that keeps PoolProtection on pools, for a caller that
// drives it with its own client (the deterministic simulation, ipamd/simulation); it
// reads PoolAllocations through that client too.
func PoolFinalizer(c client.Client) reconcile.Reconciler { return &poolFinalizer{c: c} }
