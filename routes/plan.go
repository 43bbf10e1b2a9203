package routes

import (
	"fmt"
	"hash/fnv"
	"net/netip"
	"strconv"
)

// DefaultTableBase is the first routing table number for per-interface tables: an
// interface named net1 gets table 101, eth0 gets 100.
const DefaultTableBase = 100

// RulePriority is the priority of the "from <pod address> lookup <table>" rules: before
// the main table's 32766, so replies pick their interface's table first. The rules of
// different interfaces never overlap (one per address), so they can share a priority.
const RulePriority = 1000

// Address is one address of the interface with its pool's gateway (invalid: none).
type Address struct {
	Prefix  netip.Prefix
	Gateway netip.Addr
}

// Intent is what one pod interface should route: its addresses, the merged routes
// (subnet < pool < pod annotation) and, per family, whether it holds the pod's default route.
type Intent struct {
	IfName    string
	Addresses []Address
	Routes    []Route
	Default4  bool
	Default6  bool
	// Table is the interface's own routing table; 0 means no policy routing.
	Table int
}

// Entry is one route to install: Table 0 is the main table; an invalid Gw is on-link.
type Entry struct {
	Dst   netip.Prefix
	Gw    netip.Addr
	Src   netip.Addr // preferred source, set on the per-table subnet route
	Table int
}

func (e Entry) String() string {
	s := e.Dst.String()
	if e.Gw.IsValid() {
		s += " via " + e.Gw.String()
	}
	if e.Table != 0 {
		s += " table " + strconv.Itoa(e.Table)
	}
	return s
}

// Rule sends traffic from Src to Table.
type Rule struct {
	Src   netip.Prefix
	Table int
}

func (r Rule) String() string { return fmt.Sprintf("from %s lookup %d", r.Src, r.Table) }

// Plan is the routes and rules for one interface.
type Plan struct {
	Routes []Entry
	Rules  []Rule
}

// Build turns an intent into routes and rules. The main table gets every merged route
// except default routes, plus the default route per family only where the interface
// holds it; the interface's own table gets everything, so a reply from one of its
// addresses leaves through it whichever interface holds the main default route.
func Build(in Intent) (Plan, error) {
	var p Plan
	gw4, gw6 := gateways(in.Addresses)
	for _, r := range in.Routes {
		if r.Gw.IsValid() && !onSomeSubnet(r.Gw, in.Addresses) {
			return Plan{}, fmt.Errorf("route %s via %s on %s: the gateway is on none of the interface's subnets", r.Dst, r.Gw, in.IfName)
		}
	}
	mainDefault := func(is4 bool) bool { return (is4 && in.Default4) || (!is4 && in.Default6) }
	explicitDefault := map[bool]bool{}
	for _, r := range in.Routes {
		is4 := r.Dst.Addr().Is4()
		if r.Dst.Bits() == 0 {
			explicitDefault[is4] = true
			if !mainDefault(is4) {
				continue
			}
		}
		p.Routes = append(p.Routes, Entry{Dst: r.Dst, Gw: r.Gw})
	}
	fams := []struct {
		is4 bool
		gw  netip.Addr
	}{{true, gw4}, {false, gw6}}
	for _, f := range fams {
		if f.gw.IsValid() && mainDefault(f.is4) && !explicitDefault[f.is4] {
			p.Routes = append(p.Routes, Entry{Dst: anyPrefix(f.is4), Gw: f.gw})
		}
	}
	if in.Table == 0 {
		return p, nil
	}
	for _, a := range in.Addresses {
		p.Routes = append(p.Routes, Entry{Dst: a.Prefix.Masked(), Src: a.Prefix.Addr(), Table: in.Table})
		p.Rules = append(p.Rules, Rule{Src: netip.PrefixFrom(a.Prefix.Addr(), a.Prefix.Addr().BitLen()), Table: in.Table})
	}
	for _, r := range in.Routes {
		p.Routes = append(p.Routes, Entry{Dst: r.Dst, Gw: r.Gw, Table: in.Table})
	}
	for _, f := range fams {
		if f.gw.IsValid() && !explicitDefault[f.is4] {
			p.Routes = append(p.Routes, Entry{Dst: anyPrefix(f.is4), Gw: f.gw, Table: in.Table})
		}
	}
	return p, nil
}

// TableFor numbers an interface's table from its name so DEL and CHECK find it without
// saved state: base plus the name's trailing number (net1: base+1), or, for a name
// without one, base+1000 plus a hash of the name.
func TableFor(ifName string, base int) int {
	if base <= 0 {
		base = DefaultTableBase
	}
	i := len(ifName)
	for i > 0 && ifName[i-1] >= '0' && ifName[i-1] <= '9' {
		i--
	}
	if n, err := strconv.Atoi(ifName[i:]); err == nil && i < len(ifName) && n < 1000 {
		return base + n
	}
	h := fnv.New32a()
	_, _ = h.Write([]byte(ifName))
	return base + 1000 + int(h.Sum32()%1000)
}

func gateways(addrs []Address) (gw4, gw6 netip.Addr) {
	for _, a := range addrs {
		switch {
		case a.Gateway.Is4() && !gw4.IsValid():
			gw4 = a.Gateway
		case a.Gateway.Is6() && !gw6.IsValid():
			gw6 = a.Gateway
		}
	}
	return gw4, gw6
}

func onSomeSubnet(gw netip.Addr, addrs []Address) bool {
	for _, a := range addrs {
		if a.Prefix.Masked().Contains(gw) {
			return true
		}
	}
	return false
}

func anyPrefix(is4 bool) netip.Prefix {
	if is4 {
		return netip.PrefixFrom(netip.IPv4Unspecified(), 0)
	}
	return netip.PrefixFrom(netip.IPv6Unspecified(), 0)
}
