package service

import (
	"context"
	"fmt"
	"net/netip"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/core/allocator"
	"github.com/underpool/underpool/core/selection"
	"github.com/underpool/underpool/netplan"
	"github.com/underpool/underpool/rpc"
)

// response adds routes by level: the Subnet holding each pool, then the pool, then the
// pod's routes annotation for this interface; a later level wins per destination. views
// holds the pools a fresh allocation just committed, as the commit parsed them; a pool
// not in it (an address held already) is read from the cache.
func (s *Service) response(ctx context.Context, in *selection.Input, ips []v1.EndpointIP, views map[string]*allocator.PoolView) (*rpc.AllocateResponse, error) {
	var alloc netplan.Allocation
	var subnetRoutes, poolRoutes []netplan.Route
	subnets, err := s.Cluster.Subnets(ctx)
	if err != nil {
		return nil, internal("listing Subnets: %v", err)
	}
	for _, ip := range ips {
		addr := netplan.Address{Pool: ip.Pool, Vlan: ip.Vlan}
		if addr.Prefix, err = netip.ParsePrefix(ip.Address); err != nil {
			return nil, internal("Endpoint address %q of pool %s: %v", ip.Address, ip.Pool, err)
		}
		if ip.Gateway != "" {
			if addr.Gateway, err = netip.ParseAddr(ip.Gateway); err != nil {
				return nil, internal("Endpoint gateway %q of pool %s: %v", ip.Gateway, ip.Pool, err)
			}
		}
		alloc.Addresses = append(alloc.Addresses, addr)
		pool := views[ip.Pool]
		if pool == nil {
			if pool, err = s.Pools.View(ctx, ip.Pool); err != nil {
				continue
			}
		}
		poolRoutes = append(poolRoutes, pool.Routes...)
		if sub := enclosingSubnet(subnets, pool.Prefix); sub != nil {
			for i, r := range sub.Spec.Routes {
				route, err := netplan.ParseRoute(r.Dst, r.Gw, fmt.Sprintf("Subnet %s spec.routes[%d]", sub.Name, i))
				if err != nil {
					return nil, badRequest("routes", "%v", err)
				}
				subnetRoutes = append(subnetRoutes, route)
			}
		}
	}
	alloc.Routes = netplan.Merge(subnetRoutes, poolRoutes, podRoutesFor(in))
	alloc.DefaultRouteInterface = in.PodAnnotations.DefaultRouteNIC
	return rpc.NewAllocateResponse(alloc), nil
}

// podRoutesFor returns the routes annotation's routes for the interface, parsed when the
// request began.
func podRoutesFor(in *selection.Input) []netplan.Route {
	var out []netplan.Route
	for _, r := range in.PodAnnotations.RoutesFor(in.IfName) {
		out = append(out, netplan.Route{Dst: r.Dst, Gw: r.Gw})
	}
	return out
}

// enclosingSubnet returns the most specific Subnet whose CIDR holds the pool's.
func enclosingSubnet(subnets []v1.Subnet, pool netip.Prefix) *v1.Subnet {
	var best *v1.Subnet
	bestBits := -1
	for i := range subnets {
		p, err := netip.ParsePrefix(subnets[i].Spec.Subnet)
		if err != nil || p.Bits() > pool.Bits() || !p.Contains(pool.Addr()) || p.Bits() <= bestBits {
			continue
		}
		best, bestBits = &subnets[i], p.Bits()
	}
	return best
}
