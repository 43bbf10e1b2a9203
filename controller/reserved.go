package controller

import (
	"context"
	"net/netip"
	"slices"

	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/core/allocator"
)

// +kubebuilder:rbac:groups=underpool.io,resources=reservedips/status,verbs=update

// indexEndpointAddress indexes Endpoints by every address they hold (without its prefix
// length), so the holders of a reserved address are found without listing every Endpoint.
const indexEndpointAddress = "status.interfaces.ips.address"

// maxReservedLookups bounds the addresses of one ReservedIP looked up one by one in the
// index; a bigger reservation (a wide range) is checked against every Endpoint instead.
const maxReservedLookups = 4096

// reservedInUse reports on a ReservedIP's status which of its addresses a pod still holds:
// a reservation does not evict a live pod, but it must not be silently ineffective. Its
// cost follows the change: an Endpoint event reconciles only the ReservedIPs covering an
// address the Endpoint holds or held (reservationsHolding), and a reconcile looks up the
// reservation's addresses in the Endpoint index instead of reading every Endpoint.
type reservedInUse struct{ c client.Client }

func (r *reservedInUse) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	res := &v1.ReservedIP{}
	if err := r.c.Get(ctx, req.NamespacedName, res); err != nil {
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	inUse, err := r.holders(ctx, reservedRanges(res.Spec.IPs))
	if err != nil {
		return reconcile.Result{}, err
	}
	slices.Sort(inUse)
	inUse = slices.Compact(inUse)
	if slices.Equal(inUse, res.Status.InUse) {
		return reconcile.Result{}, nil
	}
	res.Status.InUse = inUse
	return reconcile.Result{}, client.IgnoreNotFound(r.c.Status().Update(ctx, res))
}

// holders names the reserved addresses Endpoints hold, "ip namespace/name" each.
func (r *reservedInUse) holders(ctx context.Context, ranges []addrRange) ([]string, error) {
	var eps []v1.Endpoint
	if addrs, ok := enumerate(ranges, maxReservedLookups); ok {
		for _, a := range addrs {
			var list v1.EndpointList
			if err := r.c.List(ctx, &list, client.MatchingFields{indexEndpointAddress: a.String()}); err != nil {
				return nil, err
			}
			eps = append(eps, list.Items...)
		}
	} else {
		var list v1.EndpointList
		if err := r.c.List(ctx, &list); err != nil {
			return nil, err
		}
		eps = list.Items
	}
	var inUse []string
	for i := range eps {
		for _, a := range endpointAddresses(&eps[i]) {
			if covered(ranges, a) {
				inUse = append(inUse, a.String()+" "+eps[i].Namespace+"/"+eps[i].Name)
			}
		}
	}
	return inUse, nil
}

// reservationsHolding maps an Endpoint event to the ReservedIPs that cover an address the
// Endpoint holds. controller-runtime maps both the old and the new object of an update,
// so a reservation whose address was just released is reconciled too.
func reservationsHolding(c client.Reader) handler.EventHandler {
	return handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, obj client.Object) []reconcile.Request {
		ep, ok := obj.(*v1.Endpoint)
		if !ok {
			return nil
		}
		addrs := endpointAddresses(ep)
		if len(addrs) == 0 {
			return nil
		}
		var list v1.ReservedIPList
		if err := c.List(ctx, &list); err != nil {
			return nil
		}
		var reqs []reconcile.Request
		for _, res := range list.Items {
			ranges := reservedRanges(res.Spec.IPs)
			if slices.ContainsFunc(addrs, func(a netip.Addr) bool { return covered(ranges, a) }) {
				reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&res)})
			}
		}
		return reqs
	})
}

// endpointAddressIndex is the indexer of indexEndpointAddress.
func endpointAddressIndex(o client.Object) []string {
	var out []string
	for _, a := range endpointAddresses(o.(*v1.Endpoint)) {
		out = append(out, a.String())
	}
	return out
}

// endpointAddresses are the addresses an Endpoint holds; unparsable ones are skipped.
func endpointAddresses(ep *v1.Endpoint) []netip.Addr {
	var out []netip.Addr
	for _, itf := range ep.Status.Interfaces {
		for _, ip := range itf.IPs {
			if p, err := netip.ParsePrefix(ip.Address); err == nil {
				out = append(out, p.Addr())
			}
		}
	}
	return out
}

// addrRange is one ReservedIP entry: an address, or an inclusive range of one family.
type addrRange struct{ lo, hi netip.Addr }

// reservedRanges reads a ReservedIP's entries; one that does not parse (the CRD's schema
// refuses those) reserves nothing.
func reservedRanges(items []string) []addrRange {
	// a bad entry reserves what it clearly names, as ipamd reads it (store.ReservedIPs)
	ranges, _ := allocator.ParseReservations("spec.ips", items)
	out := make([]addrRange, 0, len(ranges))
	for _, r := range ranges {
		out = append(out, addrRange{r.Lo, r.Hi})
	}
	return out
}

func covered(ranges []addrRange, a netip.Addr) bool {
	return slices.ContainsFunc(ranges, func(r addrRange) bool {
		return r.lo.Is4() == a.Is4() && !a.Less(r.lo) && !r.hi.Less(a)
	})
}

// enumerate lists the addresses of ranges, or reports false when there are more than max.
func enumerate(ranges []addrRange, max int) ([]netip.Addr, bool) {
	var out []netip.Addr
	for _, r := range ranges {
		for a := r.lo; ; a = a.Next() {
			if len(out) == max {
				return nil, false
			}
			out = append(out, a)
			if a == r.hi {
				break
			}
		}
	}
	return out, true
}
