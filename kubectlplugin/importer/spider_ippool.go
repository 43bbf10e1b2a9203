package importer

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	v1 "github.com/underpool/underpool/api/v1"
)

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

// ipPools reads each SpiderIPPool into an IPPool spec and the addresses its status marks.
func (r *spiderReader) ipPools(list []unstructured.Unstructured) error {
	for i := range list {
		u := &list[i]
		from := "SpiderIPPool " + u.GetName()
		var s spiderPoolSpec
		if err := fromField(u, "spec", &s); err != nil {
			return err
		}
		name := poolName(r.prefix, u.GetName())
		r.poolOf[u.GetName()] = name
		r.st.pools = append(r.st.pools, peerPool{from: from, name: name, spec: r.ipPoolSpec(from, name, &s)})
		allocs, err := spiderAllocations(u)
		if err != nil {
			return err
		}
		r.allocations(from, name, allocs)
	}
	return nil
}

// ipPoolSpec translates a SpiderIPPool spec, with a note for what changes meaning.
func (r *spiderReader) ipPoolSpec(from, name string, s *spiderPoolSpec) v1.IPPoolSpec {
	spec := v1.IPPoolSpec{
		Subnet: s.Subnet, IPs: s.IPs, ExcludeIPs: s.ExcludeIPs, Gateway: deref(s.Gateway), Routes: s.Routes,
		Vlan: int32(derefInt(s.Vlan)), Default: s.Default != nil && *s.Default,
		PodAffinity: s.PodAffinity, NamespaceAffinity: s.NamespaceAffinity, NodeAffinity: s.NodeAffinity, MultusNames: s.MultusName,
	}
	// Spiderpool's namespaceName/nodeName win over the affinities; underpool has
	// selectors only, on the labels every namespace and node carries.
	if len(s.NamespaceName) > 0 {
		spec.NamespaceAffinity = inSelector("kubernetes.io/metadata.name", s.NamespaceName)
		r.st.notes = append(r.st.notes, fmt.Sprintf("%s: spec.namespaceName became IPPool %s spec.namespaceAffinity on kubernetes.io/metadata.name", from, name))
	}
	if len(s.NodeName) > 0 {
		spec.NodeAffinity = inSelector("kubernetes.io/hostname", s.NodeName)
		r.st.notes = append(r.st.notes, fmt.Sprintf("%s: spec.nodeName became IPPool %s spec.nodeAffinity on kubernetes.io/hostname (check that your nodes' hostname label is their name)", from, name))
	}
	if s.Disable != nil && *s.Disable {
		r.st.notes = append(r.st.notes, fmt.Sprintf("%s is disabled; IPPool %s is not (underpool has no disabled pools): give it a podAffinity no pod matches if it must hand out nothing", from, name))
	}
	return spec
}

// allocations adds the addresses a SpiderIPPool's status marks, in address-text order.
func (r *spiderReader) allocations(from, pool string, allocs map[string]spiderAllocation) {
	ips := make([]string, 0, len(allocs))
	for ip := range allocs {
		ips = append(ips, ip)
	}
	sort.Strings(ips)
	for _, ipText := range ips {
		a := allocs[ipText]
		addr, err := parseAddrOrPrefix(ipText)
		if err != nil {
			r.st.skipped = append(r.st.skipped, Skip{Address: ipText, From: from, Reason: "not an IP address"})
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
		r.st.allocs = append(r.st.allocs, peerAlloc{from: from, pool: pool, ip: addr, namespace: ns, pod: pod, podUID: a.PodUID,
			ifName: ifName, containerID: a.ContainerID, node: a.Node})
	}
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
