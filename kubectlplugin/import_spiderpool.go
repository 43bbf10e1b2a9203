package kubectlplugin

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"sort"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/underpool/underpool/api/v1"
)

// Spiderpool's kinds (spiderpool.spidernet.io/v2beta1), read as unstructured.
var (
	spiderGV           = schema.GroupVersion{Group: "spiderpool.spidernet.io", Version: "v2beta1"}
	spiderIPPoolGVK    = spiderGV.WithKind("SpiderIPPool")
	spiderSubnetGVK    = spiderGV.WithKind("SpiderSubnet")
	spiderReservedGVK  = spiderGV.WithKind("SpiderReservedIP")
	spiderEndpointGVK  = spiderGV.WithKind("SpiderEndpoint")
	spiderContainerIDs = "spiderpool-import-" // + pod UID: Spiderpool records no sandbox ID
)

// spiderPoolSpec holds the fields of SpiderIPPool and SpiderSubnet specs the import reads.
type spiderPoolSpec struct {
	Subnet            string                `json:"subnet"`
	IPs               []string              `json:"ips"`
	ExcludeIPs        []string              `json:"excludeIPs"`
	Gateway           *string               `json:"gateway"`
	Vlan              *int64                `json:"vlan"`
	Routes            []v1.Route            `json:"routes"`
	PodAffinity       *metav1.LabelSelector `json:"podAffinity"`
	NamespaceAffinity *metav1.LabelSelector `json:"namespaceAffinity"`
	NamespaceName     []string              `json:"namespaceName"`
	NodeAffinity      *metav1.LabelSelector `json:"nodeAffinity"`
	NodeName          []string              `json:"nodeName"`
	MultusName        []string              `json:"multusName"`
	Default           *bool                 `json:"default"`
	Disable           *bool                 `json:"disable"`
}

// spiderAllocation is one entry of SpiderIPPool status.allocatedIPs. Spiderpool 0.8 and
// later write {interface, pod: "ns/name", podUid}; older releases wrote nic, namespace,
// containerID and node as well, which are read when present.
type spiderAllocation struct {
	Interface   string `json:"interface"`
	NIC         string `json:"nic"`
	Pod         string `json:"pod"`
	Namespace   string `json:"namespace"`
	PodUID      string `json:"podUid"`
	ContainerID string `json:"containerID"`
	Node        string `json:"node"`
}

// spiderEndpointStatus is SpiderEndpoint status.current.
type spiderEndpointStatus struct {
	Current struct {
		UID  string `json:"uid"`
		Node string `json:"node"`
		IPs  []struct {
			Interface string  `json:"interface"`
			IPv4      *string `json:"ipv4"`
			IPv4Pool  *string `json:"ipv4Pool"`
			IPv6      *string `json:"ipv6"`
			IPv6Pool  *string `json:"ipv6Pool"`
		} `json:"ips"`
	} `json:"current"`
}

// fromField decodes obj's field (spec, status) into v through JSON.
func fromField(obj *unstructured.Unstructured, field string, v any) error {
	raw, ok := obj.Object[field]
	if !ok {
		return nil
	}
	data, err := json.Marshal(raw)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("%s %s: %s: %w", obj.GetKind(), obj.GetName(), field, err)
	}
	return nil
}

func readSpiderpool(ctx context.Context, c client.Client, prefix string) (*peerState, error) {
	st := &peerState{}
	subnets, err := listPeer(ctx, c, spiderSubnetGVK)
	if err != nil {
		return nil, err
	}
	pools, err := listPeer(ctx, c, spiderIPPoolGVK)
	if err != nil {
		return nil, err
	}
	reserved, err := listPeer(ctx, c, spiderReservedGVK)
	if err != nil {
		return nil, err
	}
	endpoints, err := listPeer(ctx, c, spiderEndpointGVK)
	if err != nil {
		return nil, err
	}
	if len(subnets)+len(pools)+len(reserved) == 0 {
		return nil, fmt.Errorf("found no SpiderSubnet, SpiderIPPool or SpiderReservedIP (%s): is Spiderpool installed in this cluster (kubectl get spiderippools)?", spiderGV)
	}

	for i := range subnets {
		u := &subnets[i]
		var s spiderPoolSpec
		if err := fromField(u, "spec", &s); err != nil {
			return nil, err
		}
		st.subnets = append(st.subnets, peerSubnet{from: "SpiderSubnet " + u.GetName(), name: poolName(prefix, u.GetName()), spec: v1.SubnetSpec{
			Subnet: s.Subnet, IPs: s.IPs, ExcludeIPs: s.ExcludeIPs, Gateway: deref(s.Gateway), Routes: s.Routes, Vlan: int32(derefInt(s.Vlan)),
		}})
	}

	poolOf := map[string]string{} // SpiderIPPool name -> IPPool name
	for i := range pools {
		u := &pools[i]
		from := "SpiderIPPool " + u.GetName()
		var s spiderPoolSpec
		if err := fromField(u, "spec", &s); err != nil {
			return nil, err
		}
		name := poolName(prefix, u.GetName())
		poolOf[u.GetName()] = name
		spec := v1.IPPoolSpec{
			Subnet: s.Subnet, IPs: s.IPs, ExcludeIPs: s.ExcludeIPs, Gateway: deref(s.Gateway), Routes: s.Routes,
			Vlan: int32(derefInt(s.Vlan)), Default: s.Default != nil && *s.Default,
			PodAffinity: s.PodAffinity, NamespaceAffinity: s.NamespaceAffinity, NodeAffinity: s.NodeAffinity, MultusNames: s.MultusName,
		}
		// Spiderpool's namespaceName/nodeName win over the affinities; underpool has
		// selectors only, on the labels every namespace and node carries.
		if len(s.NamespaceName) > 0 {
			spec.NamespaceAffinity = inSelector("kubernetes.io/metadata.name", s.NamespaceName)
			st.notes = append(st.notes, fmt.Sprintf("%s: spec.namespaceName became IPPool %s spec.namespaceAffinity on kubernetes.io/metadata.name", from, name))
		}
		if len(s.NodeName) > 0 {
			spec.NodeAffinity = inSelector("kubernetes.io/hostname", s.NodeName)
			st.notes = append(st.notes, fmt.Sprintf("%s: spec.nodeName became IPPool %s spec.nodeAffinity on kubernetes.io/hostname (check that your nodes' hostname label is their name)", from, name))
		}
		if s.Disable != nil && *s.Disable {
			st.notes = append(st.notes, fmt.Sprintf("%s is disabled; IPPool %s is not (underpool has no disabled pools): give it a podAffinity no pod matches if it must hand out nothing", from, name))
		}
		st.pools = append(st.pools, peerPool{from: from, name: name, spec: spec})

		allocs, err := spiderAllocations(u)
		if err != nil {
			return nil, err
		}
		ips := make([]string, 0, len(allocs))
		for ip := range allocs {
			ips = append(ips, ip)
		}
		sort.Strings(ips)
		for _, ipText := range ips {
			a := allocs[ipText]
			addr, err := parseAddrOrPrefix(ipText)
			if err != nil {
				st.skipped = append(st.skipped, ImportSkip{Address: ipText, From: from, Reason: "not an IP address"})
				continue
			}
			ns, pod, found := strings.Cut(a.Pod, "/")
			if !found {
				ns, pod = a.Namespace, a.Pod
			}
			ifName := a.Interface
			if ifName == "" {
				ifName = a.NIC
			}
			st.allocs = append(st.allocs, peerAlloc{from: from, pool: name, ip: addr, namespace: ns, pod: pod, podUID: a.PodUID,
				ifName: ifName, containerID: a.ContainerID, node: a.Node})
		}
	}

	// SpiderEndpoints name each pod's node and UID, and addresses the pool status may
	// not (yet) mark.
	type key struct{ ns, pod string }
	node, uid := map[key]string{}, map[key]string{}
	have := map[netip.Addr]bool{}
	for _, a := range st.allocs {
		have[a.ip] = true
	}
	for i := range endpoints {
		u := &endpoints[i]
		var s spiderEndpointStatus
		if err := fromField(u, "status", &s); err != nil {
			return nil, err
		}
		k := key{u.GetNamespace(), u.GetName()}
		node[k], uid[k] = s.Current.Node, s.Current.UID
		for _, e := range s.Current.IPs {
			for _, fam := range [][2]*string{{e.IPv4, e.IPv4Pool}, {e.IPv6, e.IPv6Pool}} {
				if fam[0] == nil || *fam[0] == "" {
					continue
				}
				from := "SpiderEndpoint " + u.GetNamespace() + "/" + u.GetName()
				addr, err := parseAddrOrPrefix(*fam[0])
				if err != nil {
					st.skipped = append(st.skipped, ImportSkip{Address: *fam[0], From: from, Reason: "not an IP address"})
					continue
				}
				if have[addr] {
					continue
				}
				pool, ok := poolOf[deref(fam[1])]
				if !ok {
					st.skipped = append(st.skipped, ImportSkip{Address: addr.String(), From: from, Pod: k.ns + "/" + k.pod,
						Reason: fmt.Sprintf("its SpiderIPPool %q does not exist", deref(fam[1]))})
					continue
				}
				have[addr] = true
				st.allocs = append(st.allocs, peerAlloc{from: from, pool: pool, ip: addr, namespace: k.ns, pod: k.pod, podUID: s.Current.UID, ifName: e.Interface})
			}
		}
	}
	for i := range st.allocs {
		a := &st.allocs[i]
		k := key{a.namespace, a.pod}
		if a.node == "" {
			a.node = node[k]
		}
		if a.podUID == "" {
			a.podUID = uid[k]
		}
		if a.ifName == "" {
			a.ifName = "eth0" // Spiderpool's default interface
		}
		if a.containerID == "" {
			a.containerID = spiderContainerIDs + a.podUID
		}
	}

	for i := range reserved {
		u := &reserved[i]
		var s struct {
			IPs []string `json:"ips"`
		}
		if err := fromField(u, "spec", &s); err != nil {
			return nil, err
		}
		if len(s.IPs) == 0 {
			st.notes = append(st.notes, fmt.Sprintf("SpiderReservedIP %s lists no address: not imported", u.GetName()))
			continue
		}
		st.reserved = append(st.reserved, peerReserved{from: "SpiderReservedIP " + u.GetName(), name: poolName(prefix, u.GetName()), ips: s.IPs})
	}
	return st, nil
}

// spiderAllocations decodes status.allocatedIPs: a JSON string in Spiderpool 0.5 and
// later, an object before.
func spiderAllocations(u *unstructured.Unstructured) (map[string]spiderAllocation, error) {
	out := map[string]spiderAllocation{}
	raw, found, _ := unstructured.NestedFieldNoCopy(u.Object, "status", "allocatedIPs")
	if !found || raw == nil {
		return out, nil
	}
	var data []byte
	if s, ok := raw.(string); ok {
		if s == "" {
			return out, nil
		}
		data = []byte(s)
	} else {
		var err error
		if data, err = json.Marshal(raw); err != nil {
			return nil, err
		}
	}
	if err := json.Unmarshal(data, &out); err != nil {
		return nil, fmt.Errorf("SpiderIPPool %s status.allocatedIPs is not a map of IP to allocation: %w", u.GetName(), err)
	}
	return out, nil
}

func inSelector(key string, values []string) *metav1.LabelSelector {
	return &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: key, Operator: metav1.LabelSelectorOpIn, Values: values}}}
}

// parseAddrOrPrefix reads "10.6.1.5" or "10.6.1.5/16" (Spiderpool writes both forms).
func parseAddrOrPrefix(s string) (netip.Addr, error) {
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Addr(), nil
	}
	return netip.ParseAddr(s)
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

func derefInt(n *int64) int64 {
	if n == nil {
		return 0
	}
	return *n
}
