// Package routes decides the routes a pod interface gets. Routes come in levels (subnet,
// then pool, then the pod's annotation); a later level overrides an earlier one for the
// same destination, so operators set defaults broadly and override narrowly.
package routes

import (
	"fmt"
	"net/netip"
)

// Route is a destination and an optional next hop (empty: on-link).
type Route struct {
	Dst netip.Prefix
	Gw  netip.Addr
}

// Parse reads a route given as strings; field names the source in errors
// (e.g. "IPPool p1 spec.routes[2]").
func Parse(dst, gw, field string) (Route, error) {
	d, err := netip.ParsePrefix(dst)
	if err != nil {
		return Route{}, fmt.Errorf("%s: dst %q is not a CIDR (e.g. 10.0.0.0/8)", field, dst)
	}
	r := Route{Dst: d.Masked()}
	if gw != "" {
		if r.Gw, err = netip.ParseAddr(gw); err != nil {
			return Route{}, fmt.Errorf("%s: gw %q is not an IP address", field, gw)
		}
		if r.Gw.Is4() != r.Dst.Addr().Is4() {
			return Route{}, fmt.Errorf("%s: gw %s and dst %s are of different families", field, gw, dst)
		}
	}
	return r, nil
}

// Merge combines levels from lowest to highest precedence: a route of a later level
// replaces an earlier route to the same destination. Order of first appearance is kept so
// results are stable.
func Merge(levels ...[]Route) []Route {
	index := map[netip.Prefix]int{}
	var out []Route
	for _, level := range levels {
		for _, r := range level {
			if i, ok := index[r.Dst]; ok {
				out[i] = r
				continue
			}
			index[r.Dst] = len(out)
			out = append(out, r)
		}
	}
	return out
}
