package chain

import (
	"net"
	"net/netip"

	current "github.com/containernetworking/cni/pkg/types/100"

	"github.com/underpool/underpool/netplan"
)

// The CNI result is the plugins' other edge: ipamplugin formats ipamd's addresses and
// routes into it, and a prevResult (CHECK, DEL) is read back here once.

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
