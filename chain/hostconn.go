package chain

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"

	"github.com/containernetworking/cni/pkg/skel"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/plugins/pkg/ip"
	"github.com/containernetworking/plugins/pkg/netlinksafe"
	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/containernetworking/plugins/pkg/utils/sysctl"
	"github.com/vishvananda/netlink"

	"github.com/underpool/underpool/netplan"
	"github.com/underpool/underpool/underlay"
)

// HostConnectivityConf gives a macvlan or ipvlan pod a way to its own node: those links
// never reach their parent's host, so kubelet probes, node-local agents and (through the
// node) services would be out of reach. A veth pair joins pod and node; the node routes
// the pod's addresses into it and the pod routes the node's addresses and the given
// CIDRs out of it.
type HostConnectivityConf struct {
	// Enabled: unset is automatic (on when the delegate is macvlan or ipvlan and this
	// interface holds the pod's default route, i.e. no overlay eth0 or earlier NIC
	// does); true always; false never.
	Enabled *bool `json:"enabled,omitempty"`
	// NodeAddresses the pod reaches through the veth; empty: every global address of
	// the node but loopback's, read at ADD.
	NodeAddresses []string `json:"nodeAddresses,omitempty"`
	// ServiceCIDRs and ClusterCIDRs are routed via the node (its first address of the
	// family), which DNATs and forwards them as for its own traffic.
	ServiceCIDRs []string `json:"serviceCIDRs,omitempty"`
	ClusterCIDRs []string `json:"clusterCIDRs,omitempty"`

	nodeAddrs []netip.Addr
	cidrs     []netip.Prefix
}

func (h *HostConnectivityConf) load() error {
	for i, s := range h.NodeAddresses {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return fmt.Errorf("hostConnectivity.nodeAddresses[%d] %q is not an IP address", i, s)
		}
		h.nodeAddrs = append(h.nodeAddrs, a)
	}
	for _, list := range []struct {
		field string
		cidrs []string
	}{{"serviceCIDRs", h.ServiceCIDRs}, {"clusterCIDRs", h.ClusterCIDRs}} {
		for i, s := range list.cidrs {
			p, err := netip.ParsePrefix(s)
			if err != nil {
				return fmt.Errorf("hostConnectivity.%s[%d] %q is not a CIDR (e.g. 10.96.0.0/12)", list.field, i, s)
			}
			h.cidrs = append(h.cidrs, p.Masked())
		}
	}
	return nil
}

// wanted is the documented rule for Enabled.
func (h HostConnectivityConf) wanted(delegateType string, holdsDefault bool) bool {
	if h.Enabled != nil {
		return *h.Enabled
	}
	return (delegateType == "macvlan" || delegateType == "ipvlan") && holdsDefault
}

// hostVethName is the node-side end, named from the attachment so DEL and CHECK find it
// without saved state (15 characters at most, the kernel's limit).
func hostVethName(containerID, ifName string) string {
	sum := sha256.Sum256([]byte(containerID + "/" + ifName))
	return "up" + hex.EncodeToString(sum[:])[:11]
}

// podVethName is the pod-side end: "host-" + the interface it serves.
func podVethName(ifName string) string {
	n := "host-" + ifName
	if len(n) > 15 {
		n = n[:15]
	}
	return n
}

// hostPlan decides the host link's routes; it runs in the node netns (node addresses
// are read there when not configured).
func hostPlan(conf *NetConf, ifName string, podAddrs []netip.Addr) (netplan.HostPlan, error) {
	nodeAddrs := conf.HostConnectivity.nodeAddrs
	if len(nodeAddrs) == 0 {
		var err error
		if nodeAddrs, err = underlay.NodeAddresses(); err != nil {
			return netplan.HostPlan{}, err
		}
	}
	return netplan.BuildHost(netplan.HostIntent{PodAddrs: podAddrs, NodeAddrs: nodeAddrs,
		CIDRs: conf.HostConnectivity.cidrs, Table: conf.Routing.table(ifName)})
}

// setupHostLink runs in the node netns after the pod interface is configured; it returns
// both veth ends for the result. A leftover pair of a crashed ADD is replaced.
func setupHostLink(conf *NetConf, args *skel.CmdArgs, podAddrs []netip.Addr) ([]*current.Interface, error) {
	plan, err := hostPlan(conf, args.IfName, podAddrs)
	if err != nil {
		return nil, err
	}
	pinned := plan.PodNeighbors()
	hostName, podName := hostVethName(args.ContainerID, args.IfName), podVethName(args.IfName)
	if err := underlay.DeleteLink(hostName); err != nil {
		return nil, err
	}
	nodeNS, err := ns.GetCurrentNS()
	if err != nil {
		return nil, err
	}
	defer nodeNS.Close()
	var hostIf, podIf net.Interface
	err = ns.WithNetNSPath(args.Netns, func(ns.NetNS) error {
		if err := underlay.DeleteLink(podName); err != nil {
			return err
		}
		pod, err := netlinksafe.LinkByName(args.IfName)
		if err != nil {
			return err
		}
		if hostIf, podIf, err = ip.SetupVethWithName(podName, hostName, pod.Attrs().MTU, "", nodeNS); err != nil {
			return fmt.Errorf("veth %s <-> %s: %w", podName, hostName, err)
		}
		link, err := netlinksafe.LinkByName(podName)
		if err == nil {
			err = netlink.LinkSetUp(link)
		}
		if err == nil {
			err = underlay.SetNeighbors(link, pinned, hostIf.HardwareAddr)
		}
		if err == nil {
			err = underlay.Apply(link, netplan.Plan{Routes: plan.Pod})
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	link, err := netlinksafe.LinkByName(hostName)
	if err != nil {
		return nil, err
	}
	if err := underlay.SetNeighbors(link, podAddrs, podIf.HardwareAddr); err != nil {
		return nil, err
	}
	if err := underlay.Apply(link, netplan.Plan{Routes: plan.Node}); err != nil {
		return nil, err
	}
	if err := enableForwarding(hostName, conf.HostConnectivity.cidrs, podAddrs); err != nil {
		return nil, err
	}
	return []*current.Interface{
		{Name: hostName, Mac: hostIf.HardwareAddr.String(), Mtu: hostIf.MTU},
		{Name: podName, Mac: podIf.HardwareAddr.String(), Mtu: podIf.MTU, Sandbox: args.Netns},
	}, nil
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

// removeHostLink deletes the pair (and with it every route and neighbour through it);
// none is no error. A pod netns already gone took the pair with it.
func removeHostLink(args *skel.CmdArgs) error {
	return underlay.DeleteLink(hostVethName(args.ContainerID, args.IfName))
}

// checkHostLink verifies both ends, their routes and neighbours, when ADD made them.
func checkHostLink(conf *NetConf, args *skel.CmdArgs, prev *current.Result) error {
	hostName, podName := hostVethName(args.ContainerID, args.IfName), podVethName(args.IfName)
	made := false
	for _, itf := range prev.Interfaces {
		made = made || (itf.Name == hostName && itf.Sandbox == "")
	}
	if !made {
		if conf.HostConnectivity.Enabled != nil && *conf.HostConnectivity.Enabled {
			return internalError("hostConnectivity.enabled is true but the ADD result lists no host veth %s", hostName)
		}
		return nil
	}
	var podAddrs []netip.Addr
	for _, p := range resultAddresses(prev, args.IfName) {
		podAddrs = append(podAddrs, p.Addr())
	}
	plan, err := hostPlan(conf, args.IfName, podAddrs)
	if err != nil {
		return internalError("%v", err)
	}
	pinned := plan.PodNeighbors()
	hostLink, err := netlinksafe.LinkByName(hostName)
	if err != nil {
		return internalError("host veth %s is missing from the node: %v", hostName, err)
	}
	var diffs []string
	err = ns.WithNetNSPath(args.Netns, func(ns.NetNS) error {
		podLink, err := netlinksafe.LinkByName(podName)
		if err != nil {
			return fmt.Errorf("%s (the pod end of the host veth) is missing from the pod netns: %w", podName, err)
		}
		if podLink.Attrs().ParentIndex != hostLink.Attrs().Index {
			return fmt.Errorf("%s in the pod is not the peer of the node's %s", podName, hostName)
		}
		diffs = append(diffs, underlay.Verify(podLink, netplan.Plan{Routes: plan.Pod})...)
		diffs = append(diffs, underlay.VerifyNeighbors(podLink, pinned, hostLink.Attrs().HardwareAddr)...)
		return nil
	})
	if err != nil {
		return internalError("%v", err)
	}
	podMAC, err := peerMAC(args.Netns, podName)
	if err != nil {
		return internalError("%v", err)
	}
	for _, d := range underlay.Verify(hostLink, netplan.Plan{Routes: plan.Node}) {
		diffs = append(diffs, d+" (node)")
	}
	for _, d := range underlay.VerifyNeighbors(hostLink, podAddrs, podMAC) {
		diffs = append(diffs, d+" (node)")
	}
	if len(diffs) > 0 {
		return internalError("host connectivity of %s differs from the ADD: %v", args.IfName, diffs)
	}
	return nil
}

func peerMAC(netnsPath, name string) (net.HardwareAddr, error) {
	var mac net.HardwareAddr
	err := ns.WithNetNSPath(netnsPath, func(ns.NetNS) error {
		l, err := netlinksafe.LinkByName(name)
		if err == nil {
			mac = l.Attrs().HardwareAddr
		}
		return err
	})
	return mac, err
}

// withoutHostLink drops the veth ends from a raw result before the delegate checks it:
// they are not the delegate's.
func withoutHostLink(raw map[string]any, args *skel.CmdArgs) {
	list, _ := raw["interfaces"].([]any)
	hostName, podName := hostVethName(args.ContainerID, args.IfName), podVethName(args.IfName)
	kept := list[:0:0]
	for _, itf := range list {
		m, _ := itf.(map[string]any)
		if n, _ := m["name"].(string); n == hostName || n == podName {
			continue
		}
		kept = append(kept, itf)
	}
	if list != nil {
		raw["interfaces"] = kept
	}
}
