package controller

import (
	"context"

	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	v1 "github.com/underpool/underpool/api/v1"
)

// +kubebuilder:rbac:groups=underpool.io,resources=ippools,verbs=update

// PoolProtection keeps a pool with live allocations from being deleted.
const PoolProtection = v1.PoolProtection

// poolFinalizer adds PoolProtection to every pool and lifts it once a deleted pool is empty.
type poolFinalizer struct{ c client.Client }

// holdsNothing reports whether a pool's status shows no address held. status.allocated
// is what ipamd allocates from; the count beside it is derived from it and may lag a hand
// repair, so it is not asked. A corrupt status (one that does not parse, or names offsets
// outside the pool: "1-400000" on a /24) is never empty: the pool stays until it is
// repaired, as its Invalid condition says, and nothing of it is iterated meanwhile.
func holdsNothing(pool *v1.IPPool) bool {
	return pool.Status.Allocated == ""
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
	case pool.DeletionTimestamp != nil && holdsNothing(pool) && controllerutil.ContainsFinalizer(pool, PoolProtection):
		controllerutil.RemoveFinalizer(pool, PoolProtection)
		return reconcile.Result{}, client.IgnoreNotFound(r.c.Update(ctx, pool))
	}
	return reconcile.Result{}, nil
}

// PoolFinalizer is the reconciler that keeps PoolProtection on pools, for a caller that
// drives it with its own client (the deterministic simulation, ipamd/simulation).
func PoolFinalizer(c client.Client) reconcile.Reconciler { return &poolFinalizer{c: c} }
