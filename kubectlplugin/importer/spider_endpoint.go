package importer

import (
	"fmt"
	"net/netip"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// spiderEndpointStatus is SpiderEndpoint status.current. Spiderpool before 0.8 also
// recorded the pod's sandbox there (containerID); later releases record only the UID.
type spiderEndpointStatus struct {
	Current struct {
		UID         string `json:"uid"`
		Node        string `json:"node"`
		ContainerID string `json:"containerID"`
		IPs         []struct {
			Interface string  `json:"interface"`
			IPv4      *string `json:"ipv4"`
			IPv4Pool  *string `json:"ipv4Pool"`
			IPv6      *string `json:"ipv6"`
			IPv6Pool  *string `json:"ipv6Pool"`
		} `json:"ips"`
	} `json:"current"`
}

type spiderPodKey struct{ ns, pod string }

// endpoints reads SpiderEndpoints: they name each pod's node, UID and (before Spiderpool
// 0.8) sandbox, and addresses the pool status may not (yet) mark. Then every address gets
// what its pool's record leaves out: node, UID and sandbox from the pod's SpiderEndpoint,
// eth0. An address whose sandbox no record names keeps an empty container ID: the plan
// records it as an unknown sandbox (v1.UnknownSandboxID), which ipamd matches by pod UID.
func (r *spiderReader) endpoints(list []unstructured.Unstructured) error {
	node, uid, sandbox := map[spiderPodKey]string{}, map[spiderPodKey]string{}, map[spiderPodKey]string{}
	have := map[netip.Addr]bool{}
	for _, a := range r.st.allocs {
		have[a.ip] = true
	}
	for i := range list {
		u := &list[i]
		var s spiderEndpointStatus
		if err := fromField(u, "status", &s); err != nil {
			return err
		}
		k := spiderPodKey{u.GetNamespace(), u.GetName()}
		node[k], uid[k], sandbox[k] = s.Current.Node, s.Current.UID, s.Current.ContainerID
		r.endpointAddresses(u, k, &s, have)
	}
	r.fillDefaults(node, uid, sandbox)
	return nil
}

// endpointAddresses adds the addresses of one SpiderEndpoint that no pool status marked.
func (r *spiderReader) endpointAddresses(u *unstructured.Unstructured, k spiderPodKey, s *spiderEndpointStatus, have map[netip.Addr]bool) {
	from := "SpiderEndpoint " + u.GetNamespace() + "/" + u.GetName()
	for _, e := range s.Current.IPs {
		for _, fam := range [][2]*string{{e.IPv4, e.IPv4Pool}, {e.IPv6, e.IPv6Pool}} {
			if fam[0] == nil || *fam[0] == "" {
				continue
			}
			addr, err := parseAddrOrPrefix(*fam[0])
			if err != nil {
				r.st.skipped = append(r.st.skipped, Skip{Address: *fam[0], From: from, Reason: "not an IP address"})
				continue
			}
			if have[addr] {
				continue
			}
			pool, ok := r.poolOf[deref(fam[1])]
			if !ok {
				r.st.skipped = append(r.st.skipped, Skip{Address: addr.String(), From: from, Pod: k.ns + "/" + k.pod,
					Reason: fmt.Sprintf("its SpiderIPPool %q does not exist", deref(fam[1]))})
				continue
			}
			have[addr] = true
			r.st.allocs = append(r.st.allocs, peerAlloc{from: from, pool: pool, ip: addr, namespace: k.ns, pod: k.pod, podUID: s.Current.UID,
				ifName: e.Interface, containerID: s.Current.ContainerID})
		}
	}
}

// fillDefaults completes each address from its pod's SpiderEndpoint. The SpiderEndpoint's
// sandbox is the pod's current one, so it is taken only for the incarnation it names.
func (r *spiderReader) fillDefaults(node, uid, sandbox map[spiderPodKey]string) {
	for i := range r.st.allocs {
		a := &r.st.allocs[i]
		k := spiderPodKey{a.namespace, a.pod}
		if a.node == "" {
			a.node = node[k]
		}
		if a.podUID == "" {
			a.podUID = uid[k]
		}
		if a.ifName == "" {
			a.ifName = "eth0" // Spiderpool's default interface
		}
		if a.containerID == "" && a.podUID == uid[k] {
			a.containerID = sandbox[k]
		}
	}
}
