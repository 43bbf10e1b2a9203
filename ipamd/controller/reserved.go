package controller

import (
	"context"
	"net/netip"
	"slices"

	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/underpool/underpool/ipamd/allocator"
	v1 "github.com/underpool/underpool/ipamd/api/v1"
)

// reservedInUse reports on a ReservedIP's status which of its addresses a pod still holds:
// a reservation does not evict a live pod, but it must not be silently ineffective.
type reservedInUse struct{ c client.Client }

func (r *reservedInUse) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	res := &v1.ReservedIP{}
	if err := r.c.Get(ctx, req.NamespacedName, res); err != nil {
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	var eps v1.EndpointList
	if err := r.c.List(ctx, &eps); err != nil {
		return reconcile.Result{}, err
	}
	// a bad entry reserves what it clearly names, as ipamd reads it (store.ReservedIPs)
	reserved, _ := allocator.ParseReservations("spec.ips", res.Spec.IPs)
	var inUse []string
	for _, ep := range eps.Items {
		for _, itf := range ep.Status.Interfaces {
			for _, ip := range itf.IPs {
				p, err := netip.ParsePrefix(ip.Address)
				if err != nil {
					continue
				}
				host := netip.PrefixFrom(p.Addr(), p.Addr().BitLen())
				if !allocator.Clip(host, reserved).Empty() {
					inUse = append(inUse, p.Addr().String()+" "+ep.Namespace+"/"+ep.Name)
				}
			}
		}
	}
	slices.Sort(inUse)
	if slices.Equal(inUse, res.Status.InUse) {
		return reconcile.Result{}, nil
	}
	res.Status.InUse = inUse
	return reconcile.Result{}, client.IgnoreNotFound(r.c.Status().Update(ctx, res))
}
