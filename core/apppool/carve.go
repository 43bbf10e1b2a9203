package apppool

import (
	"fmt"
	"net/netip"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/core/allocator"
)

// NoRoomError says a Subnet has too few free addresses for a pool: the controller then
// carves a new pool from the next Subnet the workload names, and reports an existing pool
// that cannot grow where it is (its pods' addresses never move to another Subnet).
type NoRoomError struct {
	Subnet     string
	Free, Need uint64
}

func (e *NoRoomError) Error() string {
	return fmt.Sprintf("only %d addresses of Subnet %s are free, the pool needs %d more", e.Free, e.Subnet, e.Need)
}

// Carve returns the spec.ips of a workload's pool of size addresses in subnet. The pool's
// current addresses are kept (growing adds the lowest free addresses of the subnet, not
// used by any other pool; shrinking drops the highest addresses nobody holds), so a pod's
// address never moves because its workload scaled. A pool never shrinks below one
// address: an IPPool without spec.ips offers its whole subnet, and would overlap every
// other pool carved from it (a workload scaled to zero keeps one address; the controller
// creates no pool for a size of zero). Too few free addresses is a *NoRoomError.
// allocated is current's state.allocated (its PoolAllocation's, v1.StateOf): what the pool
// holds, never dropped.
func Carve(subnet *v1.Subnet, others []v1.IPPool, current *v1.IPPool, allocated string, size int) ([]string, error) {
	space, err := allocator.NewPool(subnet.Name, &v1.IPPoolSpec{Subnet: subnet.Spec.Subnet, IPs: subnet.Spec.IPs,
		ExcludeIPs: subnet.Spec.ExcludeIPs, Gateway: subnet.Spec.Gateway})
	if err != nil {
		return nil, fmt.Errorf("reading Subnet %s: %w", subnet.Name, err)
	}
	var taken, own, held allocator.RunSet
	for i := range others {
		p := &others[i]
		if current != nil && p.Name == current.Name {
			continue
		}
		mapInto(space, p, &taken)
	}
	if current != nil {
		mapInto(space, current, &own)
		held = heldOf(space, current, allocated, own)
	}
	if size < 0 || size > v1.MaxAppPoolIPNumber {
		return nil, fmt.Errorf("a pool of %d addresses is over the limit of %d per application pool (annotation %s)", size, v1.MaxAppPoolIPNumber, v1.AnnotationIPNumber)
	}
	want := uint64(max(size, 1))
	switch have := own.Count(); {
	case have < want:
		free := space.Usable.Subtract(taken).Subtract(own)
		if free.Count() < want-have {
			return nil, &NoRoomError{Subnet: subnet.Name, Free: free.Count(), Need: want - have}
		}
		for _, r := range takeLowest(free, want-have).Runs() {
			own.AddRun(r)
		}
	case have > want:
		own = dropHighestUnheld(own, held, have-want)
	}
	var ips []string
	for _, r := range own.Runs() {
		if r.Lo == r.Hi {
			ips = append(ips, space.Addr(r.Lo).String())
		} else {
			ips = append(ips, space.Addr(r.Lo).String()+"-"+space.Addr(r.Hi).String())
		}
	}
	return ips, nil
}

// heldOf is what the pool holds, in the subnet's offsets. A state that cannot be trusted
// (it does not parse, or names offsets outside the pool: "1-400000" on a /24) holds all
// of own: the pool may still grow, but it drops no address until it is repaired, and
// nothing of such a state is read further.
func heldOf(space *allocator.PoolView, current *v1.IPPool, runs string, own allocator.RunSet) allocator.RunSet {
	view, err := allocator.NewPool(current.Name, &current.Spec)
	if err != nil {
		return own.Clone()
	}
	allocated, err := view.ParseAllocated(runs)
	if err != nil {
		return own.Clone()
	}
	var held allocator.RunSet
	for _, r := range allocated.Runs() {
		mapRun(space, view.Addr(r.Lo), view.Addr(r.Hi), &held)
	}
	return held
}

// mapInto adds a pool's usable addresses that lie in the subnet, in the subnet's offsets.
func mapInto(space *allocator.PoolView, p *v1.IPPool, into *allocator.RunSet) {
	view, err := allocator.NewPool(p.Name, &p.Spec)
	if err != nil || !space.Prefix.Overlaps(view.Prefix) {
		return
	}
	for _, r := range view.Usable.Runs() {
		mapRun(space, view.Addr(r.Lo), view.Addr(r.Hi), into)
	}
}

func mapRun(space *allocator.PoolView, lo, hi netip.Addr, into *allocator.RunSet) {
	l, okL := space.Offset(lo)
	h, okH := space.Offset(hi)
	if okL && okH {
		into.AddRun(allocator.Run{Lo: l, Hi: h})
	}
}

func takeLowest(s allocator.RunSet, n uint64) allocator.RunSet {
	var out allocator.RunSet
	for _, r := range s.Runs() {
		if n == 0 {
			break
		}
		size := r.Hi - r.Lo + 1
		if size > n {
			size = n
		}
		out.AddRun(allocator.Run{Lo: r.Lo, Hi: r.Lo + size - 1})
		n -= size
	}
	return out
}

// dropHighestUnheld removes the n highest addresses of own that nobody holds. It works on
// runs, never on single addresses: a pool once sized to 10^12 IPv6 addresses shrinks to
// its replicas in as many steps as it has runs.
func dropHighestUnheld(own, held allocator.RunSet, n uint64) allocator.RunSet {
	return own.Subtract(takeHighest(own.Subtract(held), n))
}

func takeHighest(s allocator.RunSet, n uint64) allocator.RunSet {
	var out allocator.RunSet
	runs := s.Runs()
	for i := len(runs) - 1; i >= 0 && n > 0; i-- {
		r := runs[i]
		if r.Hi-r.Lo <= n-1 { // the whole run goes: its size Hi-Lo+1 is at most n (n > 0 here)
			out.AddRun(r)
			n -= r.Hi - r.Lo + 1
			continue
		}
		out.AddRun(allocator.Run{Lo: r.Hi - (n - 1), Hi: r.Hi})
		n = 0
	}
	return out
}
