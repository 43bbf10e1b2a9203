// Package allocator decides which address a request gets. It owns the parsed view of a
// pool (its range, gateway, reservations; ParseAllocated refuses a corrupt status), the
// run sets of offsets that status.allocated encodes, picking the next address, clipping
// ReservedIP entries to a pool, and what two pools share (overlap). It is pure: it works
// on a view of a pool's spec and allocation state and never does I/O, so that every rule
// is tested without an apiserver; the store commits its decisions.
package allocator

import (
	"errors"
	"fmt"
	"math"
	"net/netip"
	"strings"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/netplan"
)

// ErrExhausted means the pool has no free address left.
var ErrExhausted = errors.New("no free address")

// ErrAllocated means a requested address is allocated already.
var ErrAllocated = errors.New("already allocated")

// PoolView is the parsed, allocation-ready view of an IPPool spec (v1.IPPool is the CRD,
// store.PoolCommitter writes its status).
type PoolView struct {
	Name string
	// UID is the IPPool object's UID, when the view was made from one (releases name the
	// incarnation they free in)
	UID     string
	Prefix  netip.Prefix
	Gateway netip.Addr // invalid when the pool has none
	Vlan    int32
	Routes  []netplan.Route
	// Usable are the offsets the pool may hand out: spec.ips minus spec.excludeIPs, the
	// gateway, and the network/broadcast addresses.
	Usable RunSet
}

// Family returns the pool's address family.
func (p *PoolView) Family() v1.IPFamily {
	if p.Prefix.Addr().Is4() {
		return v1.IPv4
	}
	return v1.IPv6
}

// NewPool parses an IPPool spec. Errors name the field at fault.
func NewPool(name string, spec *v1.IPPoolSpec) (*PoolView, error) {
	prefix, err := netip.ParsePrefix(strings.TrimSpace(spec.Subnet))
	if err != nil {
		return nil, fmt.Errorf("spec.subnet %q is not a CIDR (e.g. 10.250.1.0/24): %v", spec.Subnet, err)
	}
	prefix = prefix.Masked()
	if hostBits(prefix) > 64 {
		return nil, fmt.Errorf("spec.subnet %s has %d host bits; use a prefix of /64 or longer", prefix, hostBits(prefix))
	}
	p := &PoolView{Name: name, Prefix: prefix, Vlan: spec.Vlan}
	for i, r := range spec.Routes {
		route, err := netplan.ParseRoute(r.Dst, r.Gw, fmt.Sprintf("spec.routes[%d]", i))
		if err != nil {
			return nil, err
		}
		p.Routes = append(p.Routes, route)
	}
	if spec.Gateway != "" {
		gw, err := netip.ParseAddr(spec.Gateway)
		if err != nil || !prefix.Contains(gw) {
			return nil, fmt.Errorf("spec.gateway %q must be an address inside spec.subnet %s", spec.Gateway, prefix)
		}
		p.Gateway = gw
	}
	usable := NewRunSet(Run{0, lastOffset(prefix)})
	if len(spec.IPs) > 0 {
		if usable, err = ParseRanges(prefix, spec.IPs, "spec.ips"); err != nil {
			return nil, err
		}
	}
	exclude, err := ParseRanges(prefix, spec.ExcludeIPs, "spec.excludeIPs")
	if err != nil {
		return nil, err
	}
	exclude.Add(0) // network address (IPv4) or subnet-router anycast (IPv6)
	if prefix.Addr().Is4() && prefix.Bits() < 31 {
		exclude.Add(lastOffset(prefix)) // broadcast
	}
	if p.Gateway.IsValid() {
		exclude.Add(p.offsetOf(p.Gateway))
	}
	p.Usable = usable.Subtract(exclude)
	return p, nil
}

// TotalCount is the number of usable addresses, saturated to fit an int64 status field.
func (p *PoolView) TotalCount() int64 { return saturate(p.Usable.Count()) }

func saturate(n uint64) int64 {
	if n > math.MaxInt64 {
		return math.MaxInt64
	}
	return int64(n)
}

// Addr returns the address at offset o of the subnet.
func (p *PoolView) Addr(o uint64) netip.Addr {
	b := p.Prefix.Addr().As16()
	for i := 15; i >= 8 && o > 0; i-- {
		sum := uint64(b[i]) + (o & 0xff)
		b[i] = byte(sum)
		o = (o >> 8) + (sum >> 8)
	}
	a := netip.AddrFrom16(b)
	if p.Prefix.Addr().Is4() {
		return a.Unmap()
	}
	return a
}

// Offset returns the offset of addr in the subnet, or false when addr lies outside it.
func (p *PoolView) Offset(addr netip.Addr) (uint64, bool) {
	if !p.Prefix.Contains(inFamilyOf(p.Prefix, addr)) {
		return 0, false
	}
	return p.offsetOf(addr), true
}

func (p *PoolView) offsetOf(addr netip.Addr) uint64 { return offsetIn(p.Prefix, addr) }

// Prefixed returns the address at offset o with the subnet's prefix length.
func (p *PoolView) Prefixed(o uint64) netip.Prefix {
	return netip.PrefixFrom(p.Addr(o), p.Prefix.Bits())
}

func hostBits(p netip.Prefix) int { return p.Addr().BitLen() - p.Bits() }

func lastOffset(p netip.Prefix) uint64 {
	if hostBits(p) == 64 {
		return ^uint64(0)
	}
	return 1<<uint(hostBits(p)) - 1
}

// inFamilyOf reads addr in p's family: an IPv4-mapped IPv6 address (::ffff:a.b.c.d) is
// the IPv4 address for an IPv4 subnet, and stays itself for an IPv6 one, which may well
// hold it (::/80 does).
func inFamilyOf(p netip.Prefix, addr netip.Addr) netip.Addr {
	if p.Addr().Is4() {
		return addr.Unmap()
	}
	return addr
}

func offsetIn(p netip.Prefix, addr netip.Addr) uint64 {
	a, n := addr.Unmap().As16(), p.Addr().As16()
	var o uint64
	for i := 8; i < 16; i++ {
		o = o<<8 | uint64(a[i]-n[i])
	}
	// only the host bits differ, so byte-wise subtraction never borrows
	return o
}

// ParseRanges reads addresses and inclusive ranges ("a", "a-b") inside prefix into offsets.
// field names the spec field in errors.
func ParseRanges(prefix netip.Prefix, items []string, field string) (RunSet, error) {
	var s RunSet
	for i, item := range items {
		loText, hiText, isRange := strings.Cut(strings.TrimSpace(item), "-")
		lo, err := parseIn(prefix, loText)
		if err != nil {
			return RunSet{}, fmt.Errorf("%s[%d] %q: %v", field, i, item, err)
		}
		hi := lo
		if isRange {
			if hi, err = parseIn(prefix, hiText); err != nil {
				return RunSet{}, fmt.Errorf("%s[%d] %q: %v", field, i, item, err)
			}
			if hi < lo {
				return RunSet{}, fmt.Errorf("%s[%d] %q: range end is before its start", field, i, item)
			}
		}
		s.AddRun(Run{lo, hi})
	}
	return s, nil
}

func parseIn(prefix netip.Prefix, text string) (uint64, error) {
	a, err := netip.ParseAddr(strings.TrimSpace(text))
	if err != nil {
		return 0, fmt.Errorf("%q is not an IP address", text)
	}
	if !prefix.Contains(inFamilyOf(prefix, a)) {
		return 0, fmt.Errorf("%s is outside the subnet %s", a, prefix)
	}
	return offsetIn(prefix, a), nil
}

func lastAddr(p netip.Prefix) netip.Addr {
	return (&PoolView{Prefix: p.Masked()}).Addr(lastOffset(p))
}
