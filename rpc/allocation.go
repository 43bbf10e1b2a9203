package rpc

import (
	"fmt"
	"net/netip"

	"github.com/underpool/underpool/netplan"
)

// NewAllocateResponse formats an allocation for the wire. It is the only place the
// daemon turns addresses and routes into strings; Allocation is the only place a plugin
// turns them back.
func NewAllocateResponse(a netplan.Allocation) *AllocateResponse {
	resp := &AllocateResponse{IPs: make([]IPConfig, 0, len(a.Addresses)), DefaultRouteInterface: a.DefaultRouteInterface}
	for _, x := range a.Addresses {
		c := IPConfig{Address: x.Prefix.String(), Pool: x.Pool, Vlan: x.Vlan}
		if x.Gateway.IsValid() {
			c.Gateway = x.Gateway.String()
		}
		resp.IPs = append(resp.IPs, c)
	}
	for _, r := range a.Routes {
		w := Route{Dst: r.Dst.String()}
		if r.Gw.IsValid() {
			w.Gw = r.Gw.String()
		}
		resp.Routes = append(resp.Routes, w)
	}
	return resp
}

// Allocation parses ipamd's answer into the vocabulary both plugins work with. Errors
// name the field of the answer at fault: they mean the daemon and the plugin disagree
// about the wire, never that the pod is wrong.
func (r *AllocateResponse) Allocation() (netplan.Allocation, error) {
	a := netplan.Allocation{DefaultRouteInterface: r.DefaultRouteInterface}
	for i, c := range r.IPs {
		x, err := c.address()
		if err != nil {
			return netplan.Allocation{}, fmt.Errorf("ipamd answer ips[%d]: %v", i, err)
		}
		a.Addresses = append(a.Addresses, x)
	}
	for i, w := range r.Routes {
		route, err := netplan.ParseRoute(w.Dst, w.Gw, fmt.Sprintf("ipamd answer routes[%d]", i))
		if err != nil {
			return netplan.Allocation{}, err
		}
		a.Routes = append(a.Routes, route)
	}
	return a, nil
}

func (c IPConfig) address() (netplan.Address, error) {
	p, err := netip.ParsePrefix(c.Address)
	if err != nil {
		return netplan.Address{}, fmt.Errorf("address %q of pool %s is not an address with its prefix length", c.Address, c.Pool)
	}
	x := netplan.Address{Prefix: p, Pool: c.Pool, Vlan: c.Vlan}
	if c.Gateway == "" {
		return x, nil
	}
	if x.Gateway, err = netip.ParseAddr(c.Gateway); err != nil {
		return netplan.Address{}, fmt.Errorf("gateway %q of pool %s is not an IP address", c.Gateway, c.Pool)
	}
	if x.Gateway.Is4() != p.Addr().Is4() {
		return netplan.Address{}, fmt.Errorf("gateway %s of pool %s is not of the family of %s", c.Gateway, c.Pool, p)
	}
	return x, nil
}
