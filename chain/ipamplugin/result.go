package ipamplugin

import (
	"net"
	"net/netip"
	"strings"

	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"

	"github.com/underpool/underpool/netplan"
)

// The CNI result is the plugins' other edge: ipamd's addresses and routes are formatted
// into it here once, for both plugins.

// Result is the IPAM plugin's answer: the addresses, a default route through each
// gateway when the network wants one, then ipamd's routes. The calling plugin installs
// them in the main table.
func Result(alloc netplan.Allocation, defaultRoute bool) *current.Result {
	res := &current.Result{CNIVersion: current.ImplementedSpecVersion, IPs: IPs(alloc.Addresses, nil)}
	var routes []netplan.Route
	for _, a := range alloc.Addresses {
		if a.Gateway.IsValid() && defaultRoute {
			routes = append(routes, netplan.Route{Dst: netip.PrefixFrom(unspecified(a.Gateway), 0), Gw: a.Gateway})
		}
	}
	res.Routes = Routes(append(routes, alloc.Routes...))
	return res
}

// IPs formats the addresses; ifIndex is the pod interface's index in the result's
// Interfaces, or nil for an IPAM-only result.
func IPs(addrs []netplan.Address, ifIndex *int) []*current.IPConfig {
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

// Routes formats routes, their table included.
func Routes(routes []netplan.Route) []*types.Route {
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

// Summary is a result's addresses for the log line of a finished ADD.
type Summary struct{ *current.Result }

func (s Summary) String() string {
	var out strings.Builder
	for _, ip := range s.IPs {
		out.WriteString(ip.Address.String() + " ")
	}
	return out.String()
}
