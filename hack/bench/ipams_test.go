package main

import (
	"net/netip"
	"testing"
)

// Every contestant gets its own block, none reaches the node's 10.250.255.0/24, and
// --pool-size gives each pool exactly that many addresses after the gateway.
func TestPlanSubnets(t *testing.T) {
	node := netip.MustParsePrefix(nodeAddress).Masked()
	for _, tc := range []struct{ pods, poolSize, want int }{
		{100, 0, 256 - 3}, {1000, 1000, 1000}, {1000, 0, 2048 - 3}, {2000, 2000, 2000},
	} {
		plans, err := planSubnets(tc.pods, tc.poolSize)
		if err != nil {
			t.Fatalf("%d pods, pool size %d: %v", tc.pods, tc.poolSize, err)
		}
		var seen []netip.Prefix
		for _, name := range allIPAMs {
			p := plans[name]
			if p.Prefix.Overlaps(node) {
				t.Errorf("%s's block %s overlaps the node's %s", name, p.Prefix, node)
			}
			for _, o := range seen {
				if o.Overlaps(p.Prefix) {
					t.Errorf("%s's block %s overlaps %s", name, p.Prefix, o)
				}
			}
			seen = append(seen, p.Prefix)
			if p.First != p.Gateway.Next() || !p.Prefix.Contains(p.Last) {
				t.Errorf("%s: range %s-%s, gateway %s, block %s", name, p.First, p.Last, p.Gateway, p.Prefix)
			}
			n := 0
			for a := p.First; a.Compare(p.Last) <= 0; a = a.Next() {
				n++
			}
			if n != tc.want {
				t.Errorf("%d pods, pool size %d: %s's pool holds %d addresses, want %d", tc.pods, tc.poolSize, name, n, tc.want)
			}
		}
	}
}
