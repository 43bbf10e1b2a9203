package controller

import (
	"net/netip"
	"strings"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/core/allocator"
)

// statusCorrupt reports whether a pool's status.allocated cannot be trusted: it does not
// parse, or it names offsets outside the pool's subnet (allocator.ParseAllocated; checked
// without enumerating, so "0-4294967295" on a /24 costs what "1-2" does). Every
// controller path that reads status.allocated asks this first and iterates nothing of a
// corrupt one: the Invalid condition (conditions.go) tells the operator how to repair it.
func statusCorrupt(p *v1.IPPool) bool {
	prefix, err := netip.ParsePrefix(strings.TrimSpace(p.Spec.Subnet))
	if err != nil {
		_, err = allocator.ParseRunSet(p.Status.Allocated)
		return err != nil
	}
	_, err = allocator.ParseAllocated(prefix, p.Status.Allocated)
	return err != nil
}

// heldCount is how many addresses a pool keeps from its Subnet: its status count, or,
// when status.allocated is corrupt (its count could be 400,000 on a /24), every usable
// address of the pool, since ipamd hands none of them out until it is repaired (nothing
// when not even its spec parses).
func heldCount(p *v1.IPPool) int64 {
	if !statusCorrupt(p) {
		return p.Status.AllocatedIPCount
	}
	if view, err := allocator.NewPool(p.Name, &p.Spec); err == nil {
		return view.TotalCount()
	}
	return 0
}
