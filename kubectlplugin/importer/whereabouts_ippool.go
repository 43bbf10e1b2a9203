package importer

import (
	"fmt"
	"net/netip"
	"sort"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	v1 "github.com/underpool/underpool/api/v1"
)

type whereaboutsAllocation struct {
	ID     string `json:"id"`
	PodRef string `json:"podref"`
	IfName string `json:"ifname"`
}

// ipPool reads one whereabouts IPPool: an IPPool spanning spec.range, and the addresses
// of spec.allocations (keyed by offset from the range's address).
func (r *whereaboutsReader) ipPool(u *unstructured.Unstructured) error {
	from := "whereabouts IPPool " + u.GetNamespace() + "/" + u.GetName()
	var s struct {
		Range       string                           `json:"range"`
		Allocations map[string]whereaboutsAllocation `json:"allocations"`
	}
	if err := fromField(u, "spec", &s); err != nil {
		return err
	}
	rng, err := netip.ParsePrefix(strings.TrimSpace(s.Range))
	if err != nil {
		return fmt.Errorf("%s: spec.range %q is not a CIDR: fix or delete that IPPool, then import again", from, s.Range)
	}
	name := poolName(r.prefix, u.GetName())
	spec := v1.IPPoolSpec{Subnet: rng.Masked().String()}
	r.gatewayAndRoutes(from, name, u.GetName(), rng.Masked(), &spec)
	r.st.pools = append(r.st.pools, peerPool{from: from, name: name, spec: spec})
	keys := make([]string, 0, len(s.Allocations))
	for k := range s.Allocations {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		r.allocation(from, name, rng, k, s.Allocations[k])
	}
	return nil
}

// allocation adds the address of one entry of spec.allocations.
func (r *whereaboutsReader) allocation(from, pool string, rng netip.Prefix, key string, a whereaboutsAllocation) {
	off, err := strconv.ParseUint(key, 10, 64)
	if err != nil {
		r.st.skipped = append(r.st.skipped, Skip{Address: key, From: from, Pod: a.PodRef, Reason: "the allocation key is not an offset"})
		return
	}
	// whereabouts counts offsets from the range's address as written (net.ParseCIDR)
	addr := addOffset(rng.Addr(), off)
	if !addr.IsValid() || !rng.Masked().Contains(addr) {
		r.st.skipped = append(r.st.skipped, Skip{Address: key, From: from, Pod: a.PodRef, Reason: fmt.Sprintf("offset %d lies outside range %s", off, rng)})
		return
	}
	ns, pod, _ := strings.Cut(a.PodRef, "/")
	ifName := a.IfName
	if ifName == "" {
		ifName, r.defaultIf = whereaboutsDefaultName, true
	}
	r.held[addr] = true
	r.st.allocs = append(r.st.allocs, peerAlloc{from: from, pool: pool, ip: addr, namespace: ns, pod: pod, ifName: ifName, containerID: a.ID})
}

// addOffset returns a + off, invalid when it runs past the family's last address.
func addOffset(a netip.Addr, off uint64) netip.Addr {
	b := a.As16()
	carry := off
	for i := 15; i >= 0 && carry > 0; i-- {
		sum := uint64(b[i]) + (carry & 0xff)
		b[i] = byte(sum)
		carry = (carry >> 8) + (sum >> 8)
	}
	if carry > 0 {
		return netip.Addr{}
	}
	out := netip.AddrFrom16(b)
	if a.Is4() {
		if !out.Is4In6() {
			return netip.Addr{}
		}
		return out.Unmap()
	}
	return out
}
