package netplan

import (
	"fmt"
	"net/netip"
)

// RouteSpec is a network's own route as written (a NAD config's routes, an
// UnderlayNetwork's spec.routes): a destination CIDR and an optional next hop.
type RouteSpec struct {
	Dst string `json:"dst"`
	Gw  string `json:"gw,omitempty"`
}

// ParseNetworkRoutes reads a network's own routes; field names the list in errors
// ("routes", "spec.routes"), and every bad entry gets one error naming it and the fix.
// Beyond ParseRoute: the gateway is a unicast address without a zone, and no two routes
// share a destination (one would silently replace the other).
func ParseNetworkRoutes(field string, specs []RouteSpec) ([]Route, []error) {
	var out []Route
	var errs []error
	seen := map[netip.Prefix]int{}
	for i, s := range specs {
		at := fmt.Sprintf("%s[%d]", field, i)
		r, err := ParseRoute(s.Dst, s.Gw, at)
		if err == nil {
			err = checkNextHop(r.Gw, at)
		}
		if err == nil {
			if first, dup := seen[r.Dst]; dup {
				err = fmt.Errorf("%s: dst %s is %s[%d]'s too: keep one route per destination", at, r.Dst, field, first)
			}
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		seen[r.Dst] = i
		out = append(out, r)
	}
	return out, errs
}

// checkNextHop refuses a gateway no route can go through.
func checkNextHop(gw netip.Addr, field string) error {
	switch {
	case !gw.IsValid():
		return nil
	case gw.Zone() != "":
		return fmt.Errorf("%s: gw %s has a zone: write the address alone, the route goes out of the pod's interface", field, gw)
	case gw.IsUnspecified() || gw.IsMulticast() || gw.IsLoopback() || gw == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return fmt.Errorf("%s: gw %s is not a unicast address: name the next hop on the pod's subnet, or leave gw out for an on-link route", field, gw)
	}
	return nil
}

// WithNetworkRoutes puts the network's own routes under the allocation's. The network
// is the lowest level (network < subnet < pool < pod annotation): ipamd merged the
// others already, and a subnet's, pool's or pod annotation's route to the same
// destination replaces the network's, since those know the segment the address is on.
// A network route of a family the attachment has no address of is refused: it could
// only go through a gateway on none of its subnets, or leave with no source address.
func (a Allocation) WithNetworkRoutes(network []Route) (Allocation, error) {
	for i, r := range network {
		is4 := r.Dst.Addr().Is4()
		if !a.HasFamily(is4) {
			return Allocation{}, fmt.Errorf("routes[%d] %s: the attachment has no %s address (it holds %s): give the network an %s pool, or remove the route",
				i, r, familyName(is4), a.Addrs(), familyName(is4))
		}
	}
	if len(network) == 0 {
		return a, nil
	}
	a.Routes = Merge(network, a.Routes)
	return a, nil
}

func familyName(is4 bool) string {
	if is4 {
		return "IPv4"
	}
	return "IPv6"
}
