package netplan

import "net/netip"

// Merge combines route levels from lowest to highest precedence (subnet, pool, pod
// annotation): a route of a later level replaces an earlier route to the same
// destination, so operators set defaults broadly and override narrowly. Order of first
// appearance is kept so results are stable.
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
