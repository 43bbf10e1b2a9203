package chain

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/netip"

	"github.com/containernetworking/cni/pkg/skel"
	current "github.com/containernetworking/cni/pkg/types/100"

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
	// interface holds the pod's default route of every family it has, i.e. no overlay
	// eth0 or earlier NIC holds one of them); true always; false never.
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

// hostVeth is the attachment's host link, named from the attachment so DEL and CHECK
// find it without saved state.
func hostVeth(args *skel.CmdArgs) underlay.HostVeth {
	return underlay.HostVeth{Host: hostVethName(args.ContainerID, args.IfName), Pod: podVethName(args.IfName),
		PodNetns: args.Netns, PodIf: args.IfName}
}

// setupHostLink runs in the node netns after the pod interface is configured; it returns
// both veth ends for the result. A leftover pair of a crashed ADD is replaced.
func setupHostLink(conf *NetConf, args *skel.CmdArgs, podAddrs []netip.Addr) ([]*current.Interface, error) {
	plan, err := hostPlan(conf, args.IfName, podAddrs)
	if err != nil {
		return nil, err
	}
	v := hostVeth(args)
	hostIf, podIf, err := v.Connect(plan, podAddrs, conf.HostConnectivity.cidrs)
	if err != nil {
		return nil, err
	}
	return []*current.Interface{
		{Name: v.Host, Mac: hostIf.HardwareAddr.String(), Mtu: hostIf.MTU},
		{Name: v.Pod, Mac: podIf.HardwareAddr.String(), Mtu: podIf.MTU, Sandbox: args.Netns},
	}, nil
}

// removeHostLink deletes the pair (and with it every route and neighbour through it);
// none is no error. A pod netns already gone took the pair with it.
func removeHostLink(args *skel.CmdArgs) error {
	return underlay.DeleteLink(hostVethName(args.ContainerID, args.IfName))
}

// checkHostLink verifies both ends, their routes and neighbours, when ADD made them.
func checkHostLink(conf *NetConf, args *skel.CmdArgs, prev *current.Result) error {
	hostName := hostVethName(args.ContainerID, args.IfName)
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
	diffs, err := hostVeth(args).Verify(plan, podAddrs)
	if err != nil {
		return internalError("%v", err)
	}
	if len(diffs) > 0 {
		return internalError("host connectivity of %s differs from the ADD: %v", args.IfName, diffs)
	}
	return nil
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
