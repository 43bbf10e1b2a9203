// Package underlay is the Linux side of attaching a pod to an underlay network: it applies
// netplan's routes and rules, probes for address conflicts and gateways with ARP and NDP,
// manages the host veth's links and neighbours, and sets rp_filter. The decisions are
// netplan's; this package only talks to the kernel, in the calling thread's netns.
package underlay

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"syscall"

	"github.com/containernetworking/plugins/pkg/netlinksafe"
	"github.com/vishvananda/netlink"

	"github.com/underpool/underpool/netplan"
)

// The functions below act on the calling thread's network namespace: call them inside
// ns.WithNetNSPath for the pod.

// Apply installs the plan's routes through ifName and its rules. Routes are replaced, not
// added, so an ADD repeated after a crash converges instead of failing on "file exists".
func Apply(ifName string, p netplan.Plan) error {
	link, err := netlinksafe.LinkByName(ifName)
	if err != nil {
		return err
	}
	return apply(link, p)
}

func apply(link netlink.Link, p netplan.Plan) error {
	for _, e := range p.Routes {
		if err := netlink.RouteReplace(toNetlink(link, e)); err != nil {
			return fmt.Errorf("route %s dev %s: %w", e, link.Attrs().Name, err)
		}
	}
	for _, r := range p.Rules {
		if err := netlink.RuleAdd(toRule(r)); err != nil && !errors.Is(err, syscall.EEXIST) {
			return fmt.Errorf("rule %s: %w", r, err)
		}
	}
	return nil
}

// Remove deletes one attachment's policy routing: the rules to table from one of
// addrs, and the routes in table through ifName. Routes through a deleted link vanish
// with it; rules do not, and a stale rule would send a later pod's traffic from a reused
// address into an empty table. What another interface put in the table (a table shared
// by a name from an older numbering) stays. Without addresses (the link is gone and the
// runtime passed no prevResult) every rule to the table goes, but only while no other
// link routes through it.
func Remove(table int, ifName string, addrs []netip.Addr) error {
	if table == 0 {
		return nil
	}
	index := 0 // a link that is gone took its routes with it
	if link, err := netlinksafe.LinkByName(ifName); err == nil {
		index = link.Attrs().Index
		if own, err := linkAddrs(link); err == nil {
			addrs = append(own, addrs...)
		}
	}
	var errs []error
	var rules []netlink.Rule
	var routes []netlink.Route
	for _, family := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		got, err := netlinksafe.RuleListFiltered(family, &netlink.Rule{Table: table}, netlink.RT_FILTER_TABLE)
		errs = append(errs, err)
		rules = append(rules, got...)
		in, err := netlinksafe.RouteListFiltered(family, &netlink.Route{Table: table}, netlink.RT_FILTER_TABLE)
		errs = append(errs, err)
		routes = append(routes, in...)
	}
	shared := false
	for i := range routes {
		if index != 0 && routes[i].LinkIndex == index {
			if err := netlink.RouteDel(&routes[i]); err != nil && !errors.Is(err, syscall.ESRCH) {
				errs = append(errs, fmt.Errorf("deleting route in table %d: %w", table, err))
			}
		} else {
			shared = true
		}
	}
	for i := range rules {
		if !ruleFromOneOf(rules[i], addrs) && (len(addrs) > 0 || shared) {
			continue
		}
		if err := netlink.RuleDel(&rules[i]); err != nil && !errors.Is(err, syscall.ENOENT) {
			errs = append(errs, fmt.Errorf("deleting rule to table %d: %w", table, err))
		}
	}
	return errors.Join(errs...)
}

// TableLinks names the links that route through table, for ADD to see whether another
// interface already owns the table it is about to use.
func TableLinks(table int) ([]string, error) {
	var names []string
	for _, family := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		routes, err := netlinksafe.RouteListFiltered(family, &netlink.Route{Table: table}, netlink.RT_FILTER_TABLE)
		if err != nil {
			return nil, err
		}
		for _, r := range routes {
			if r.LinkIndex == 0 {
				continue
			}
			name := fmt.Sprintf("link %d", r.LinkIndex)
			if l, err := netlink.LinkByIndex(r.LinkIndex); err == nil {
				name = l.Attrs().Name
			}
			if !slices.Contains(names, name) {
				names = append(names, name)
			}
		}
	}
	return names, nil
}

func linkAddrs(link netlink.Link) ([]netip.Addr, error) {
	list, err := netlinksafe.AddrList(link, netlink.FAMILY_ALL)
	if err != nil {
		return nil, err
	}
	var out []netip.Addr
	for _, a := range list {
		if ip, ok := netip.AddrFromSlice(a.IP); ok {
			out = append(out, ip.Unmap())
		}
	}
	return out, nil
}

func ruleFromOneOf(r netlink.Rule, addrs []netip.Addr) bool {
	if r.Src == nil {
		return false
	}
	src, ok := netip.AddrFromSlice(r.Src.IP)
	return ok && slices.Contains(addrs, src.Unmap())
}

// Verify lists what of the plan the kernel does not have on ifName (empty: all in
// place); a missing ifName is an error.
func Verify(ifName string, p netplan.Plan) ([]string, error) {
	link, err := netlinksafe.LinkByName(ifName)
	if err != nil {
		return nil, err
	}
	return verify(link, p), nil
}

func verify(link netlink.Link, p netplan.Plan) []string {
	var diffs []string
	for _, e := range p.Routes {
		want := toNetlink(link, e)
		table := want.Table
		if table == 0 { // 0 would match every table: a table route would pass for the main one
			table = syscall.RT_TABLE_MAIN
		}
		filter := netlink.RT_FILTER_TABLE | netlink.RT_FILTER_OIF
		got, err := netlinksafe.RouteListFiltered(familyOf(e.Dst.Addr()), &netlink.Route{Table: table, LinkIndex: want.LinkIndex}, filter)
		if err != nil {
			diffs = append(diffs, fmt.Sprintf("listing routes: %v", err))
			continue
		}
		if !containsRoute(got, want) {
			diffs = append(diffs, "missing route "+e.String()+" dev "+link.Attrs().Name)
		}
	}
	for _, r := range p.Rules {
		got, err := netlinksafe.RuleListFiltered(familyOf(r.Src.Addr()), &netlink.Rule{Table: r.Table}, netlink.RT_FILTER_TABLE)
		if err != nil {
			diffs = append(diffs, fmt.Sprintf("listing rules: %v", err))
			continue
		}
		found := false
		for _, g := range got {
			found = found || (g.Src != nil && g.Src.String() == r.Src.String())
		}
		if !found {
			diffs = append(diffs, "missing rule "+r.String())
		}
	}
	return diffs
}

// DefaultRouteExists reports whether the main table already routes the family's default
// through some interface (an overlay eth0, or an underlay NIC attached earlier).
func DefaultRouteExists(is4 bool) (bool, error) {
	family := netlink.FAMILY_V6
	if is4 {
		family = netlink.FAMILY_V4
	}
	routes, err := netlinksafe.RouteListFiltered(family, &netlink.Route{Dst: nil}, netlink.RT_FILTER_DST)
	if err != nil {
		return false, err
	}
	for _, r := range routes {
		if r.Table == syscall.RT_TABLE_MAIN && (r.Dst == nil || r.Dst.IP.IsUnspecified()) {
			return true, nil
		}
	}
	return false, nil
}

func containsRoute(got []netlink.Route, want *netlink.Route) bool {
	for _, g := range got {
		if prefixOf(g.Dst, want.Dst) == want.Dst.String() && g.Gw.Equal(want.Gw) {
			return true
		}
	}
	return false
}

// prefixOf prints a kernel route's destination; the kernel reports default routes with
// a nil Dst.
func prefixOf(dst, like *net.IPNet) string {
	if dst != nil {
		return dst.String()
	}
	if like.IP.To4() != nil {
		return "0.0.0.0/0"
	}
	return "::/0"
}

func toNetlink(link netlink.Link, e netplan.Route) *netlink.Route {
	dst := &net.IPNet{IP: e.Dst.Addr().AsSlice(), Mask: net.CIDRMask(e.Dst.Bits(), e.Dst.Addr().BitLen())}
	r := &netlink.Route{LinkIndex: link.Attrs().Index, Dst: dst, Table: e.Table, Scope: netlink.SCOPE_UNIVERSE}
	if e.Gw.IsValid() {
		r.Gw = e.Gw.AsSlice()
	} else {
		r.Scope = netlink.SCOPE_LINK
	}
	if e.Src.IsValid() {
		r.Src = e.Src.AsSlice()
	}
	return r
}

func toRule(r netplan.Rule) *netlink.Rule {
	rule := netlink.NewRule()
	rule.Src = &net.IPNet{IP: r.Src.Addr().AsSlice(), Mask: net.CIDRMask(r.Src.Bits(), r.Src.Addr().BitLen())}
	rule.Table = r.Table
	rule.Priority = netplan.RulePriority
	rule.Family = familyOf(r.Src.Addr())
	return rule
}

func familyOf(a netip.Addr) int {
	if a.Is4() {
		return netlink.FAMILY_V4
	}
	return netlink.FAMILY_V6
}
