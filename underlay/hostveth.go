package underlay

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/containernetworking/plugins/pkg/netlinksafe"
	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/containernetworking/plugins/pkg/utils/sysctl"
	"github.com/vishvananda/netlink"

	"github.com/underpool/underpool/netplan"
)

// HostVeth is a pod's host link: a veth pair between the node's netns (Host end) and the
// pod's (Pod end), beside the pod interface a macvlan or ipvlan parent cannot reach its
// node through. Both functions run in the node netns.
type HostVeth struct {
	Host, Pod string // link names
	PodNetns  string // path of the pod's netns
	PodIf     string // the pod interface the pair serves; the pair takes its MTU
}

// Connect creates the pair, replacing a leftover of a crashed ADD, pins each end's
// neighbours, installs plan's routes on both ends and lets the node forward what the pod
// sends to forward (service and cluster CIDRs). It returns both ends.
func (v HostVeth) Connect(plan netplan.HostPlan, podAddrs []netip.Addr, forward []netip.Prefix) (host, pod net.Interface, err error) {
	if err := DeleteLink(v.Host); err != nil {
		return host, pod, err
	}
	nodeNS, err := ns.GetCurrentNS()
	if err != nil {
		return host, pod, err
	}
	defer nodeNS.Close()
	err = ns.WithNetNSPath(v.PodNetns, func(ns.NetNS) error {
		if err := DeleteLink(v.Pod); err != nil {
			return err
		}
		podIf, err := netlinksafe.LinkByName(v.PodIf)
		if err != nil {
			return err
		}
		if host, pod, err = v.makePair(podIf.Attrs().MTU, nodeNS); err != nil {
			return fmt.Errorf("veth %s <-> %s: %w", v.Pod, v.Host, err)
		}
		link, err := netlinksafe.LinkByName(v.Pod)
		if err == nil {
			err = netlink.LinkSetUp(link)
		}
		if err == nil {
			err = setNeighbors(link, plan.PodNeighbors(), host.HardwareAddr)
		}
		if err == nil {
			err = apply(link, netplan.Plan{Routes: plan.Pod})
		}
		return err
	})
	if err != nil {
		return host, pod, err
	}
	link, err := netlinksafe.LinkByName(v.Host)
	if err != nil {
		return host, pod, err
	}
	if err := setNeighbors(link, podAddrs, pod.HardwareAddr); err != nil {
		return host, pod, err
	}
	if err := apply(link, netplan.Plan{Routes: plan.Node}); err != nil {
		return host, pod, err
	}
	return host, pod, enableForwarding(v.Host, forward, podAddrs)
}

// addrGenModeNone is the kernel's IN6_ADDR_GEN_MODE_NONE (include/uapi/linux/if_link.h):
// no automatic IPv6 address on the link. golang.org/x/sys does not name it.
const addrGenModeNone = 1

// makePair creates the pair from the pod netns (the caller's), its node end in nodeNS,
// and brings the node end up without an IPv6 link-local address. The pair's two ends
// talk through pinned neighbours and the node's global addresses, never link-local ones;
// and a link-local per host veth would make the node's address list (read on every ADD)
// grow with its pods and change under every concurrent ADD, interrupting that dump.
func (v HostVeth) makePair(mtu int, nodeNS ns.NetNS) (host, pod net.Interface, err error) {
	pair := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: v.Pod, MTU: mtu}, PeerName: v.Host,
		PeerNamespace: netlink.NsFd(int(nodeNS.Fd()))}
	if err := netlink.LinkAdd(pair); err != nil {
		return host, pod, err
	}
	podLink, err := netlinksafe.LinkByName(v.Pod)
	if err != nil {
		return host, pod, err
	}
	var hostLink netlink.Link
	err = nodeNS.Do(func(ns.NetNS) error {
		if hostLink, err = netlinksafe.LinkByName(v.Host); err != nil {
			return err
		}
		if err := netlink.LinkSetIP6AddrGenMode(hostLink, addrGenModeNone); err != nil {
			return fmt.Errorf("no IPv6 link-local address on %s: %w", v.Host, err)
		}
		// routes on this end are ours alone
		_, _ = sysctl.Sysctl(fmt.Sprintf("net/ipv6/conf/%s/accept_ra", v.Host), "0")
		return netlink.LinkSetUp(hostLink)
	})
	if err != nil {
		return host, pod, err
	}
	return interfaceOf(hostLink), interfaceOf(podLink), nil
}

func interfaceOf(l netlink.Link) net.Interface {
	a := l.Attrs()
	return net.Interface{Index: a.Index, MTU: a.MTU, Name: a.Name, HardwareAddr: a.HardwareAddr, Flags: a.Flags}
}

// Verify lists what of Connect is missing: routes and neighbours on either end (node
// ones marked so). A missing end, or a pod end that is not the node end's peer, is an
// error.
func (v HostVeth) Verify(plan netplan.HostPlan, podAddrs []netip.Addr) ([]string, error) {
	hostLink, err := netlinksafe.LinkByName(v.Host)
	if err != nil {
		return nil, fmt.Errorf("host veth %s is missing from the node: %v", v.Host, err)
	}
	var diffs []string
	var podMAC net.HardwareAddr
	err = ns.WithNetNSPath(v.PodNetns, func(ns.NetNS) error {
		podLink, err := netlinksafe.LinkByName(v.Pod)
		if err != nil {
			return fmt.Errorf("%s (the pod end of the host veth) is missing from the pod netns: %w", v.Pod, err)
		}
		if podLink.Attrs().ParentIndex != hostLink.Attrs().Index {
			return fmt.Errorf("%s in the pod is not the peer of the node's %s", v.Pod, v.Host)
		}
		podMAC = podLink.Attrs().HardwareAddr
		diffs = append(diffs, verify(podLink, netplan.Plan{Routes: plan.Pod})...)
		diffs = append(diffs, verifyNeighbors(podLink, plan.PodNeighbors(), hostLink.Attrs().HardwareAddr)...)
		return nil
	})
	if err != nil {
		return nil, err
	}
	for _, d := range verify(hostLink, netplan.Plan{Routes: plan.Node}) {
		diffs = append(diffs, d+" (node)")
	}
	for _, d := range verifyNeighbors(hostLink, podAddrs, podMAC) {
		diffs = append(diffs, d+" (node)")
	}
	return diffs, nil
}

// enableForwarding lets the node forward what the pod sends to service and cluster
// CIDRs, on the host veth only (the setting goes with the link). Node-wide forwarding
// is the node's business: a Kubernetes node has it on already.
func enableForwarding(hostName string, cidrs []netip.Prefix, podAddrs []netip.Addr) error {
	for _, fam := range []struct {
		is4 bool
		key string
	}{{true, "net/ipv4/conf/%s/forwarding"}, {false, "net/ipv6/conf/%s/forwarding"}} {
		if !hasFamily(cidrs, podAddrs, fam.is4) {
			continue
		}
		if _, err := sysctl.Sysctl(fmt.Sprintf(fam.key, hostName), "1"); err != nil {
			return fmt.Errorf("enabling forwarding on %s: %w", hostName, err)
		}
	}
	return nil
}

func hasFamily(cidrs []netip.Prefix, podAddrs []netip.Addr, is4 bool) bool {
	var c, p bool
	for _, x := range cidrs {
		c = c || x.Addr().Is4() == is4
	}
	for _, a := range podAddrs {
		p = p || a.Is4() == is4
	}
	return c && p
}
