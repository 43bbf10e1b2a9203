package controller

import (
	"context"
	"net/netip"

	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/core/allocator"
)

// +kubebuilder:rbac:groups=underpool.io,resources=subnets/status,verbs=update

// subnetStatus keeps a Subnet's printer columns true: how many addresses it offers and how
// many the pools inside it hold (a pool whose state.allocated is corrupt: all it has).
// It runs on IPPool events, not on every PoolAllocation write: the counts the controller
// mirrors onto a pool (at most one write per pool per CountsInterval) are what trigger it,
// and it reads the states themselves from the cache.
type subnetStatus struct{ c client.Client }

func (r *subnetStatus) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	sub := &v1.Subnet{}
	if err := r.c.Get(ctx, req.NamespacedName, sub); err != nil {
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	space, err := allocator.NewPool(sub.Name, &v1.IPPoolSpec{Subnet: sub.Spec.Subnet, IPs: sub.Spec.IPs,
		ExcludeIPs: sub.Spec.ExcludeIPs, Gateway: sub.Spec.Gateway})
	if err != nil {
		return reconcile.Result{}, nil // the webhook refuses such a Subnet; nothing to count
	}
	var pools v1.IPPoolList
	if err := r.c.List(ctx, &pools); err != nil {
		return reconcile.Result{}, err
	}
	states, err := readStates(ctx, r.c, pools.Items)
	if err != nil {
		return reconcile.Result{}, err
	}
	var allocated int64
	for i := range pools.Items {
		p := &pools.Items[i]
		if prefix, err := netip.ParsePrefix(p.Spec.Subnet); err == nil && within(prefix.Masked(), space.Prefix) {
			state := states[p.Name]
			allocated += heldCount(p, &state)
		}
	}
	want := v1.SubnetStatus{TotalIPCount: space.TotalCount(), AllocatedIPCount: allocated}
	if sub.Status == want {
		return reconcile.Result{}, nil
	}
	sub.Status = want
	return reconcile.Result{}, client.IgnoreNotFound(r.c.Status().Update(ctx, sub))
}

// within reports whether inner lies in outer (a pool's subnet in a Subnet's).
func within(inner, outer netip.Prefix) bool {
	return outer.IsValid() && inner.Bits() >= outer.Bits() && outer.Contains(inner.Addr())
}
