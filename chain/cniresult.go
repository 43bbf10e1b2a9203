package chain

import (
	"net"
	"net/netip"

	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"

	"github.com/underpool/underpool/netplan"
)

// The CNI result is the plugins' other edge: the vocabulary is formatted into it here
// once, and read back from a prevResult (CHECK) here once.

// cniIPs formats the addresses; ifIndex is the pod interface's index in the result's
// Interfaces, or nil for an IPAM-only result.
func cniIPs(addrs []netplan.Address, ifIndex *int) []*current.IPConfig {
	out := make([]*current.IPConfig, 0, len(addrs))
	for _, a := range addrs {
		c := &current.IPConfig{Interface: ifIndex, Address: ipNet(netip.PrefixFrom(a.Prefix.Addr(), a.Prefix.Bits()))}
		if a.Gateway.IsValid() {
			c.Gateway = a.Gateway.AsSlice()
		}
		out = append(out, c)
	}
	return out
}

func cniRoutes(routes []netplan.Route) []*types.Route {
	out := make([]*types.Route, 0, len(routes))
	for _, r := range routes {
		c := &types.Route{Dst: ipNet(r.Dst)}
		if r.Gw.IsValid() {
			c.GW = r.Gw.AsSlice()
		}
		if r.Table != 0 {
			table := r.Table
			c.Table = &table
		}
		out = append(out, c)
	}
	return out
}

// ipamResult is the IPAM-only plugin's answer: the addresses, a default route through
// each gateway when the network wants one, then ipamd's routes. The calling plugin
// installs them in the main table.
func ipamResult(alloc netplan.Allocation, defaultRoute bool) *current.Result {
	res := &current.Result{CNIVersion: current.ImplementedSpecVersion, IPs: cniIPs(alloc.Addresses, nil)}
	var routes []netplan.Route
	for _, a := range alloc.Addresses {
		if a.Gateway.IsValid() && defaultRoute {
			routes = append(routes, netplan.Route{Dst: netip.PrefixFrom(unspecified(a.Gateway), 0), Gw: a.Gateway})
		}
	}
	res.Routes = cniRoutes(append(routes, alloc.Routes...))
	return res
}

func unspecified(like netip.Addr) netip.Addr {
	if like.Is4() {
		return netip.IPv4Unspecified()
	}
	return netip.IPv6Unspecified()
}

// ipNet keeps the prefix's address as is (an interface address, not its network).
func ipNet(p netip.Prefix) net.IPNet {
	return net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

// prefixOf reads a result's address back; ok is false for a malformed one.
func prefixOf(n net.IPNet) (netip.Prefix, bool) {
	a, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	ones, bits := n.Mask.Size()
	if bits == 0 {
		return netip.Prefix{}, false
	}
	return netip.PrefixFrom(a.Unmap(), ones), true
}

// resultAddresses lists the addresses the result gives ifName.
func resultAddresses(r *current.Result, ifName string) []netip.Prefix {
	var out []netip.Prefix
	for _, c := range r.IPs {
		if c.Interface == nil || *c.Interface >= len(r.Interfaces) || r.Interfaces[*c.Interface].Name != ifName {
			continue
		}
		if p, ok := prefixOf(c.Address); ok {
			out = append(out, p)
		}
	}
	return out
}

// planFromResult rebuilds what ADD installed from its result, for CHECK: the result's
// routes, and with policy routing one rule per address of the interface.
func planFromResult(conf *NetConf, ifName string, prev *current.Result) netplan.Plan {
	var p netplan.Plan
	for _, r := range prev.Routes {
		dst, ok := prefixOf(r.Dst)
		if !ok {
			continue
		}
		route := netplan.Route{Dst: dst}
		if gw, ok := netip.AddrFromSlice(r.GW); ok {
			route.Gw = gw.Unmap()
		}
		if r.Table != nil {
			route.Table = *r.Table
		}
		p.Routes = append(p.Routes, route)
	}
	table := conf.Routing.table(ifName)
	if table == 0 {
		return p
	}
	for _, a := range resultAddresses(prev, ifName) {
		p.Rules = append(p.Rules, netplan.Rule{Src: netip.PrefixFrom(a.Addr(), a.Addr().BitLen()), Table: table})
	}
	return p
}
