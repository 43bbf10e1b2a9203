package allocator

import (
	"fmt"
	"net/netip"
)

// State is a pool's allocation state during one commit: the allocated offsets as read from
// the pool's status plus the decisions made so far in this batch.
type State struct {
	Pool      *PoolView
	Allocated RunSet
	// Cursor is where the next search starts: allocating round-robin rather than lowest
	// first keeps a just-released address out of use for as long as possible, so stale ARP
	// entries on the underlay expire before the address is seen again.
	Cursor uint64
}

// Allocate takes the next free usable offset that is not in blocked (reserved addresses,
// addresses in quarantine) and marks it allocated.
func (s *State) Allocate(blocked RunSet) (netip.Prefix, error) {
	taken := s.Allocated
	if !blocked.Empty() {
		taken = s.Allocated.Clone()
		for _, r := range blocked.Runs() {
			taken.AddRun(r)
		}
	}
	o, ok := s.Pool.Usable.NextFree(s.Cursor, taken)
	if !ok {
		return netip.Prefix{}, fmt.Errorf("pool %s: %w", s.Pool.Name, ErrExhausted)
	}
	s.Allocated.Add(o)
	s.Cursor = o + 1
	return s.Pool.Prefixed(o), nil
}

// AllocateExact marks addr allocated if the pool may hand it out and nobody holds it.
func (s *State) AllocateExact(addr netip.Addr, blocked RunSet) (netip.Prefix, error) {
	o, ok := s.Pool.Offset(addr)
	switch {
	case !ok:
		return netip.Prefix{}, fmt.Errorf("%s is outside pool %s (subnet %s)", addr, s.Pool.Name, s.Pool.Prefix)
	case !s.Pool.Usable.Contains(o):
		return netip.Prefix{}, fmt.Errorf("%s is not in the usable addresses of pool %s (spec.ips/excludeIPs/gateway)", addr, s.Pool.Name)
	case blocked.Contains(o):
		return netip.Prefix{}, fmt.Errorf("%s in pool %s is reserved, in quarantine or shared with another IPPool", addr, s.Pool.Name)
	case !s.Allocated.Add(o):
		return netip.Prefix{}, fmt.Errorf("%s in pool %s is %w", addr, s.Pool.Name, ErrAllocated)
	}
	return s.Pool.Prefixed(o), nil
}

// Release frees addr; releasing a free or foreign address is a no-op, so release is idempotent.
func (s *State) Release(addr netip.Addr) bool {
	o, ok := s.Pool.Offset(addr)
	return ok && s.Allocated.Remove(o)
}

// Ensure marks addr allocated without checks: used when reconciling addresses that an
// Endpoint provably holds, which must never be handed out again whatever the pool says.
func (s *State) Ensure(addr netip.Addr) bool {
	o, ok := s.Pool.Offset(addr)
	return ok && s.Allocated.Add(o)
}
