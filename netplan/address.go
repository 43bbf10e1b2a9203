// Package netplan is the vocabulary of a CNI ADD: the addresses ipamd hands out, the
// routes of each level, the routing intent of one pod interface, its table number, and
// the plans (routes, rules, host link) built from them. It is pure, with no netlink and no
// syscalls: ipamd produces these values, the socket API carries them, and the plugins'
// Linux side (package underlay) applies them. Strings are parsed once, where they enter
// (an API object, the wire), and formatted once where they leave.
package netplan

import "net/netip"

// Address is one address of a pod interface: its pool's prefix length, the pool's
// gateway (zero: none), the pool it came from and the pool's VLAN (0: none).
type Address struct {
	Prefix  netip.Prefix
	Gateway netip.Addr
	Pool    string
	Vlan    int32
}

// Allocation is what ipamd gives one pod interface: its addresses and the routes of
// every level, already merged.
type Allocation struct {
	Addresses []Address
	Routes    []Route
	// DefaultRouteInterface is the pod's choice of the interface that holds the default
	// route (its default-route-nic annotation); "" leaves it to the network's config.
	DefaultRouteInterface string
}

// DefaultRouteHolder is the interface that holds the default route: the pod's choice,
// else configured (the network's routing.defaultRouteInterface), else "" (the first
// interface attached takes it).
func (a Allocation) DefaultRouteHolder(configured string) string {
	if a.DefaultRouteInterface != "" {
		return a.DefaultRouteInterface
	}
	return configured
}

// Intent is what the interface ifName should route with this allocation, before the
// default-route decision (made in the pod, where the other interfaces are seen). Table is
// its own routing table; 0 means no policy routing.
func (a Allocation) Intent(ifName string, table int) Intent {
	return Intent{IfName: ifName, Addresses: a.Addresses, Routes: a.Routes, Table: table}
}

// Addrs lists the bare addresses, for what needs no prefix (host routes, neighbours).
func (a Allocation) Addrs() []netip.Addr {
	out := make([]netip.Addr, 0, len(a.Addresses))
	for _, x := range a.Addresses {
		out = append(out, x.Prefix.Addr())
	}
	return out
}

// PreferIPv4 is the address a derived MAC follows: the first IPv4 one, else the first.
func (a Allocation) PreferIPv4() netip.Addr {
	for _, x := range a.Addresses {
		if x.Prefix.Addr().Is4() {
			return x.Prefix.Addr()
		}
	}
	if len(a.Addresses) == 0 {
		return netip.Addr{}
	}
	return a.Addresses[0].Prefix.Addr()
}

// HasFamily reports whether the allocation holds an IPv4 (is4) or IPv6 address.
func (a Allocation) HasFamily(is4 bool) bool {
	for _, addr := range a.Addresses {
		if addr.Prefix.Addr().Is4() == is4 {
			return true
		}
	}
	return false
}
