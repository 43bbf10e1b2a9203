package underlay

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"

	"github.com/containernetworking/plugins/pkg/netlinksafe"
	"github.com/vishvananda/netlink"
)

// maxDumpAttempts bounds the retries of a node address dump that another process's
// address change interrupted.
const maxDumpAttempts = 10

// NodeAddresses lists the calling netns' global unicast addresses, except loopback's:
// the addresses a pod may be asked to reach its node by (kubelet probes come from them).
func NodeAddresses() ([]netip.Addr, error) {
	// One dump per family for the whole node, not one call per link (issue 11). Host
	// veths carry no address on the node side (makePair), so the dump is the node's own
	// addresses whatever the number of pods, and concurrent ADDs do not interrupt it.
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		return nil, fmt.Errorf("finding the node's loopback: %w", err)
	}
	var out []netip.Addr
	seen := map[netip.Addr]bool{}
	for _, family := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		addrs, err := completeAddrDump(family)
		if err != nil {
			return nil, err
		}
		for _, a := range addrs {
			if a.LinkIndex == lo.Attrs().Index {
				continue
			}
			ip, ok := netip.AddrFromSlice(a.IP)
			if !ok || a.Scope != int(netlink.SCOPE_UNIVERSE) {
				continue
			}
			ip = ip.Unmap()
			if !ip.IsGlobalUnicast() || seen[ip] {
				continue
			}
			seen[ip] = true
			out = append(out, ip)
		}
	}
	return out, nil
}

// completeAddrDump returns a dump of family's addresses that no change interrupted: an
// interrupted one may miss addresses, and a pod missing its route to a node address
// would fail its kubelet probes with no error anywhere.
func completeAddrDump(family int) ([]netlink.Addr, error) {
	for attempt := 1; ; attempt++ {
		addrs, err := netlink.AddrList(nil, family)
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			if err != nil {
				return nil, fmt.Errorf("listing the node's addresses: %w", err)
			}
			return addrs, nil
		}
		if attempt == maxDumpAttempts {
			return nil, fmt.Errorf("listing the node's addresses: they changed during %d dumps in a row; retry (or set hostConnectivity.nodeAddresses)", attempt)
		}
	}
}

// setNeighbors pins each address to mac on link. The host link's two ends only ever talk
// to each other, so their neighbours are known: static entries make them independent of
// ARP/NDP settings (arp_ignore on IPVS nodes, IPv6 answering only for the receiving
// link's own addresses), with no proxy_arp or proxy_ndp on the node.
func setNeighbors(link netlink.Link, addrs []netip.Addr, mac net.HardwareAddr) error {
	for _, a := range addrs {
		n := &netlink.Neigh{LinkIndex: link.Attrs().Index, Family: familyOf(a), State: netlink.NUD_PERMANENT,
			IP: a.AsSlice(), HardwareAddr: mac}
		if err := netlink.NeighSet(n); err != nil {
			return fmt.Errorf("neighbour %s lladdr %s dev %s: %w", a, mac, link.Attrs().Name, err)
		}
	}
	return nil
}

// verifyNeighbors lists the static neighbours of setNeighbors that are missing.
func verifyNeighbors(link netlink.Link, addrs []netip.Addr, mac net.HardwareAddr) []string {
	var diffs []string
	for _, a := range addrs {
		got, err := netlink.NeighList(link.Attrs().Index, familyOf(a))
		if err != nil {
			diffs = append(diffs, fmt.Sprintf("listing neighbours of %s: %v", link.Attrs().Name, err))
			continue
		}
		found := false
		for _, n := range got {
			found = found || (n.IP.Equal(a.AsSlice()) && n.HardwareAddr.String() == mac.String() && n.State&netlink.NUD_PERMANENT != 0)
		}
		if !found {
			diffs = append(diffs, fmt.Sprintf("missing neighbour %s lladdr %s dev %s", a, mac, link.Attrs().Name))
		}
	}
	return diffs
}

// DeleteLink removes a link by name; one already gone is no error.
func DeleteLink(name string) error {
	link, err := netlinksafe.LinkByName(name)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return nil
		}
		return err
	}
	if err := netlink.LinkDel(link); err != nil && !errors.Is(err, syscall.ENODEV) {
		return fmt.Errorf("deleting %s: %w", name, err)
	}
	return nil
}
