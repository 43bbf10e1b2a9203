package netplan

import (
	"fmt"
	"net/netip"
)

// Intent is what one pod interface should route: its addresses, the merged routes
// (network < subnet < pool < pod annotation) and, per family, whether it holds the pod's default route.
type Intent struct {
	IfName    string
	Addresses []Address
	Routes    []Route
	Default4  bool
	Default6  bool
	// Table is the interface's own routing table; 0 means no policy routing.
	Table int
}

// Rule sends traffic from Src to Table.
type Rule struct {
	Src   netip.Prefix
	Table int
}

func (r Rule) String() string { return fmt.Sprintf("from %s lookup %d", r.Src, r.Table) }

// Plan is the routes and rules for one interface.
type Plan struct {
	Routes []Route
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
		p.Routes = append(p.Routes, Route{Dst: r.Dst, Gw: r.Gw})
	}
	fams := []struct {
		is4 bool
		gw  netip.Addr
	}{{true, gw4}, {false, gw6}}
	for _, f := range fams {
		if f.gw.IsValid() && mainDefault(f.is4) && !explicitDefault[f.is4] {
			p.Routes = append(p.Routes, Route{Dst: anyPrefix(f.is4), Gw: f.gw})
		}
	}
	if in.Table == 0 {
		return p, nil
	}
	for _, a := range in.Addresses {
		p.Routes = append(p.Routes, Route{Dst: a.Prefix.Masked(), Src: a.Prefix.Addr(), Table: in.Table})
		p.Rules = append(p.Rules, Rule{Src: netip.PrefixFrom(a.Prefix.Addr(), a.Prefix.Addr().BitLen()), Table: in.Table})
	}
	for _, r := range in.Routes {
		p.Routes = append(p.Routes, Route{Dst: r.Dst, Gw: r.Gw, Table: in.Table})
	}
	for _, f := range fams {
		if f.gw.IsValid() && !explicitDefault[f.is4] {
			p.Routes = append(p.Routes, Route{Dst: anyPrefix(f.is4), Gw: f.gw, Table: in.Table})
		}
	}
	return p, nil
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
