package allocator

import (
	"net/netip"
	"strings"

	v1 "github.com/underpool/underpool/api/v1"
)

// Footprint is every address a pool could hand out: its usable set when its spec parses,
// else its whole subnet. A pool whose spec does not parse hands out nothing today, but a
// fix of its spec can make it hand out anything of its subnet, so it is taken at its
// widest for overlap checks.
type Footprint struct {
	Prefix netip.Prefix
	Set    RunSet // offsets in Prefix; unused when All
	All    bool   // every address of Prefix (a spec that does not parse)
}

// FootprintOf returns the pool's footprint; false when not even spec.subnet parses (such a
// pool names no address at all).
func FootprintOf(name string, spec *v1.IPPoolSpec) (Footprint, bool) {
	if p, err := NewPool(name, spec); err == nil {
		return Footprint{Prefix: p.Prefix, Set: p.Usable}, true
	}
	prefix, err := netip.ParsePrefix(strings.TrimSpace(spec.Subnet))
	if err != nil {
		return Footprint{}, false
	}
	return Footprint{Prefix: prefix.Masked(), All: true}, true
}

// In returns the footprint's addresses that lie in q, as offsets of q (q must have at
// most 64 host bits, as every pool prefix has). Its cost follows the footprint's runs.
func (f Footprint) In(q netip.Prefix) RunSet {
	var out RunSet
	if !f.Prefix.Overlaps(q) {
		return out
	}
	if q.Bits() >= f.Prefix.Bits() { // q lies inside the footprint's prefix
		if f.All {
			return NewRunSet(Run{0, lastOffset(q)})
		}
		base := offsetIn(f.Prefix, q.Addr())
		last := base + lastOffset(q)
		for _, r := range f.Set.Runs() {
			if r.Hi < base || r.Lo > last {
				continue
			}
			out.AddRun(Run{max(r.Lo, base) - base, min(r.Hi, last) - base})
		}
		return out
	}
	shift := offsetIn(q, f.Prefix.Addr()) // the footprint's prefix lies inside q
	if f.All {
		return NewRunSet(Run{shift, shift + lastOffset(f.Prefix)})
	}
	for _, r := range f.Set.Runs() {
		out.AddRun(Run{r.Lo + shift, r.Hi + shift})
	}
	return out
}

// FirstShared returns the lowest address both footprints hold.
func FirstShared(a, b Footprint) (netip.Addr, bool) {
	if !a.Prefix.Overlaps(b.Prefix) {
		return netip.Addr{}, false
	}
	q := a.Prefix // the more specific prefix holds every shared address
	if b.Prefix.Bits() > q.Bits() {
		q = b.Prefix
	}
	if hostBits(q) > 64 { // two unparsable pools wider than any pool: name their start
		return q.Addr(), true
	}
	inA := a.In(q)
	shared := inA.Subtract(inA.Subtract(b.In(q)))
	if shared.Empty() {
		return netip.Addr{}, false
	}
	return (&PoolView{Prefix: q}).Addr(shared.Runs()[0].Lo), true
}
