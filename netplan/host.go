package netplan

import (
	"fmt"
	"net/netip"
)

// HostIntent is what a pod's host link (a veth pair pod <-> node next to a macvlan or
// ipvlan interface, which cannot reach its own parent's node) should route.
type HostIntent struct {
	// PodAddrs are the pod interface's addresses; the node routes each to the host veth.
	PodAddrs []netip.Addr
	// NodeAddrs are the node's own addresses the pod must reach through the veth.
	NodeAddrs []netip.Addr
	// CIDRs (services, cluster) go via the node's first address of their family: the
	// node then forwards or DNATs them as it does for its own traffic.
	CIDRs []netip.Prefix
	// Table is the pod interface's own table (0: no policy routing): its "from <pod
	// address>" rule would otherwise send replies to the node out of the underlay NIC.
	Table int
}

// HostPlan is the routes on each side of the host link: Pod routes go through the pod's
// veth end, Node routes through the node's.
type HostPlan struct {
	Pod  []Route
	Node []Route
}

// BuildHost plans the host link's routes. Families the pod has no address of are left
// out (a single-stack pod in a dual-stack cluster); a CIDR of a family the node has no
// address of cannot be routed and is an error naming it.
func BuildHost(in HostIntent) (HostPlan, error) {
	var p HostPlan
	src := map[bool]netip.Addr{}
	for _, a := range in.PodAddrs {
		if _, ok := src[a.Is4()]; !ok {
			src[a.Is4()] = a
		}
		p.Node = append(p.Node, Route{Dst: netip.PrefixFrom(a, a.BitLen())})
	}
	via := map[bool]netip.Addr{}
	var onLink []Route
	for _, n := range in.NodeAddrs {
		s, ok := src[n.Is4()]
		if !ok {
			continue
		}
		if _, ok := via[n.Is4()]; !ok {
			via[n.Is4()] = n
		}
		onLink = append(onLink, Route{Dst: netip.PrefixFrom(n, n.BitLen()), Src: s})
	}
	if len(onLink) == 0 {
		return HostPlan{}, fmt.Errorf("hostConnectivity: none of the node's addresses %v is of the pod's families: set hostConnectivity.nodeAddresses or enabled false", in.NodeAddrs)
	}
	var viaNode []Route
	for _, c := range in.CIDRs {
		s, ok := src[c.Addr().Is4()]
		if !ok {
			continue
		}
		gw, ok := via[c.Addr().Is4()]
		if !ok {
			return HostPlan{}, fmt.Errorf("hostConnectivity: %s needs a node address of its family to route through, and the node has none (set hostConnectivity.nodeAddresses)", c)
		}
		viaNode = append(viaNode, Route{Dst: c.Masked(), Gw: gw, Src: s})
	}
	// on-link routes first: the kernel accepts a gateway only once it is reachable
	tables := []int{0}
	if in.Table != 0 {
		tables = append(tables, in.Table)
	}
	for _, table := range tables {
		for _, group := range [][]Route{onLink, viaNode} {
			for _, e := range group {
				e.Table = table
				p.Pod = append(p.Pod, e)
			}
		}
	}
	return p, nil
}

// PodNeighbors are the node addresses the pod reaches on-link through its veth end (main
// table, no gateway): their neighbour entries are pinned, since the two ends only ever
// talk to each other.
func (p HostPlan) PodNeighbors() []netip.Addr {
	var out []netip.Addr
	for _, r := range p.Pod {
		if r.Table == 0 && !r.Gw.IsValid() {
			out = append(out, r.Dst.Addr())
		}
	}
	return out
}
