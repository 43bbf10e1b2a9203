package webhook

import (
	"fmt"
	"net/netip"
	"strings"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/core/allocator"
)

// validatePool checks an IPPool against the rules no single-object CEL rule can express:
// a parsable spec (subnet, ranges inside it, gateway inside it), no overlap with another
// pool's addresses, and on update, no removal of addresses that are still allocated
// (allocated: state.allocated of the old pool's PoolAllocation).
func validatePool(pool *v1.IPPool, old *v1.IPPool, allocatedRuns string, others []v1.IPPool) error {
	view, err := allocator.NewPool(pool.Name, &pool.Spec)
	if err != nil {
		return err
	}
	for i := range others {
		other := &others[i]
		if other.Name == pool.Name {
			continue
		}
		otherView, err := allocator.NewPool(other.Name, &other.Spec)
		if err != nil || !view.Prefix.Overlaps(otherView.Prefix) {
			continue
		}
		if first, ok := firstCommon(view, otherView); ok {
			return fmt.Errorf("spec.ips overlaps IPPool %s (subnet %s) at %s: pools of one subnet must not share addresses; narrow spec.ips or add it to spec.excludeIPs",
				other.Name, other.Spec.Subnet, first)
		}
	}
	if old == nil || allocatedRuns == "" {
		return nil
	}
	oldView, err := allocator.NewPool(old.Name, &old.Spec)
	if err != nil {
		return nil
	}
	allocated, err := oldView.ParseAllocated(allocatedRuns)
	if err != nil {
		// a corrupt state (offsets outside the pool included, which no spec could keep)
		// must not block repairing the spec, nor carving an application pool
		return nil
	}
	if oldView.Prefix != view.Prefix {
		return fmt.Errorf("spec.subnet cannot change from %s to %s while %d addresses are allocated", oldView.Prefix, view.Prefix, allocated.Count())
	}
	if lost := allocated.Subtract(view.Usable); !lost.Empty() {
		return fmt.Errorf("the new spec.ips/excludeIPs/gateway would remove %s, still allocated; release them first (kubectl get endpoints.underpool.io -A)",
			describe(view, lost))
	}
	return nil
}

// validateSubnet refuses a Subnet that does not parse (spec.routes included: a bad route
// would otherwise fail every ADD in the subnet after its address was allocated), a change
// that would leave pools outside it, and a delete while pools still lie inside it.
func validateSubnet(subnet *v1.Subnet, old *v1.Subnet, pools []v1.IPPool, deleting bool) error {
	if !deleting {
		if _, err := netip.ParsePrefix(subnet.Spec.Subnet); err != nil {
			return fmt.Errorf("spec.subnet %q is not a CIDR: %v", subnet.Spec.Subnet, err)
		}
		if _, err := allocator.NewPool(subnet.Name, &v1.IPPoolSpec{Subnet: subnet.Spec.Subnet, IPs: subnet.Spec.IPs,
			ExcludeIPs: subnet.Spec.ExcludeIPs, Gateway: subnet.Spec.Gateway, Routes: subnet.Spec.Routes}); err != nil {
			return err
		}
	}
	if old == nil {
		return nil
	}
	oldPrefix, err := netip.ParsePrefix(old.Spec.Subnet)
	if err != nil {
		return nil
	}
	newPrefix, _ := netip.ParsePrefix(subnet.Spec.Subnet)
	var orphans []string
	for _, p := range pools {
		pp, err := netip.ParsePrefix(p.Spec.Subnet)
		if err != nil || !within(pp, oldPrefix) {
			continue
		}
		if deleting || !within(pp, newPrefix) {
			orphans = append(orphans, p.Name)
		}
	}
	if len(orphans) > 0 {
		what := "changing spec.subnet to " + subnet.Spec.Subnet
		if deleting {
			what = "deleting Subnet " + subnet.Name
		}
		return fmt.Errorf("%s would orphan IPPools %s; move or delete them first", what, strings.Join(orphans, ", "))
	}
	return nil
}

func within(inner, outer netip.Prefix) bool {
	return outer.IsValid() && inner.Bits() >= outer.Bits() && outer.Contains(inner.Addr())
}

// firstCommon finds an address both pools may hand out.
func firstCommon(a, b *allocator.PoolView) (netip.Addr, bool) {
	for _, r := range a.Usable.Runs() {
		lo, hi := a.Addr(r.Lo), a.Addr(r.Hi)
		for _, o := range b.Usable.Runs() {
			olo, ohi := b.Addr(o.Lo), b.Addr(o.Hi)
			if lo.Compare(ohi) <= 0 && olo.Compare(hi) <= 0 {
				if lo.Compare(olo) >= 0 {
					return lo, true
				}
				return olo, true
			}
		}
	}
	return netip.Addr{}, false
}

func describe(p *allocator.PoolView, s allocator.RunSet) string {
	var parts []string
	for i, r := range s.Runs() {
		if i == 5 {
			parts = append(parts, "...")
			break
		}
		if r.Lo == r.Hi {
			parts = append(parts, p.Addr(r.Lo).String())
		} else {
			parts = append(parts, p.Addr(r.Lo).String()+"-"+p.Addr(r.Hi).String())
		}
	}
	return strings.Join(parts, ", ")
}
