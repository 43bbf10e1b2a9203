package kubectlplugin

import (
	"context"
	"fmt"
	"net/netip"
	"sort"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/underpool/underpool/api/v1"
)

// whereabouts' kinds (whereabouts.cni.cncf.io/v1alpha1), read as unstructured.
var (
	whereaboutsGV          = schema.GroupVersion{Group: "whereabouts.cni.cncf.io", Version: "v1alpha1"}
	whereaboutsPoolGVK     = whereaboutsGV.WithKind("IPPool")
	whereaboutsOverlapGVK  = whereaboutsGV.WithKind("OverlappingRangeIPReservation")
	whereaboutsDefaultName = "net1" // the interface when an allocation records none (whereabouts before 0.6)
)

type whereaboutsAllocation struct {
	ID     string `json:"id"`
	PodRef string `json:"podref"`
	IfName string `json:"ifname"`
}

func readWhereabouts(ctx context.Context, c client.Client, prefix string) (*peerState, error) {
	st := &peerState{}
	pools, err := listPeer(ctx, c, whereaboutsPoolGVK)
	if err != nil {
		return nil, err
	}
	reservations, err := listPeer(ctx, c, whereaboutsOverlapGVK)
	if err != nil {
		return nil, err
	}
	if len(pools) == 0 {
		return nil, fmt.Errorf("found no whereabouts IPPool (ippools.%s): is whereabouts installed in this cluster (kubectl get ippools.whereabouts.cni.cncf.io -A)?", whereaboutsGV.Group)
	}
	st.notes = append(st.notes, "whereabouts keeps range_start, range_end and exclude in each NetworkAttachmentDefinition, not in its IPPools: each imported IPPool spans its whole range; narrow it with spec.ips/spec.excludeIPs before pods use it")
	held := map[netip.Addr]bool{}
	defaultIf := false
	for i := range pools {
		u := &pools[i]
		from := "whereabouts IPPool " + u.GetNamespace() + "/" + u.GetName()
		var s struct {
			Range       string                           `json:"range"`
			Allocations map[string]whereaboutsAllocation `json:"allocations"`
		}
		if err := fromField(u, "spec", &s); err != nil {
			return nil, err
		}
		rng, err := netip.ParsePrefix(strings.TrimSpace(s.Range))
		if err != nil {
			return nil, fmt.Errorf("%s: spec.range %q is not a CIDR: fix or delete that IPPool, then import again", from, s.Range)
		}
		name := poolName(prefix, u.GetName())
		spec := v1.IPPoolSpec{Subnet: rng.Masked().String()}
		st.pools = append(st.pools, peerPool{from: from, name: name, spec: spec})
		keys := make([]string, 0, len(s.Allocations))
		for k := range s.Allocations {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			a := s.Allocations[k]
			off, err := strconv.ParseUint(k, 10, 64)
			if err != nil {
				st.skipped = append(st.skipped, ImportSkip{Address: k, From: from, Pod: a.PodRef, Reason: "the allocation key is not an offset"})
				continue
			}
			// whereabouts counts offsets from the range's address as written (net.ParseCIDR)
			addr := addOffset(rng.Addr(), off)
			if !addr.IsValid() || !rng.Masked().Contains(addr) {
				st.skipped = append(st.skipped, ImportSkip{Address: k, From: from, Pod: a.PodRef, Reason: fmt.Sprintf("offset %d lies outside range %s", off, rng)})
				continue
			}
			ns, pod, _ := strings.Cut(a.PodRef, "/")
			ifName := a.IfName
			if ifName == "" {
				ifName, defaultIf = whereaboutsDefaultName, true
			}
			held[addr] = true
			st.allocs = append(st.allocs, peerAlloc{from: from, pool: name, ip: addr, namespace: ns, pod: pod, ifName: ifName, containerID: a.ID})
		}
	}
	if defaultIf {
		st.notes = append(st.notes, fmt.Sprintf("some whereabouts allocations record no interface: they were imported as %s", whereaboutsDefaultName))
	}
	// An OverlappingRangeIPReservation without the IPPool allocation is a leftover of an
	// interrupted whereabouts ADD or DEL: it names an address no pool holds.
	for i := range reservations {
		u := &reservations[i]
		var s struct {
			ContainerID string `json:"containerid"`
			PodRef      string `json:"podref"`
		}
		if err := fromField(u, "spec", &s); err != nil {
			return nil, err
		}
		addr, ok := reservationAddr(u.GetName())
		from := "whereabouts OverlappingRangeIPReservation " + u.GetNamespace() + "/" + u.GetName()
		if !ok {
			st.skipped = append(st.skipped, ImportSkip{Address: u.GetName(), From: from, Pod: s.PodRef, Reason: "its name is not an address"})
			continue
		}
		if !held[addr] {
			st.skipped = append(st.skipped, ImportSkip{Address: addr.String(), From: from, Pod: s.PodRef, Reason: "no whereabouts IPPool allocates it (a leftover reservation)"})
		}
	}
	return st, nil
}

// reservationAddr reads an OverlappingRangeIPReservation name: the address, IPv6 with
// "-" for ":", after "<network name>-" when the network is named.
func reservationAddr(name string) (netip.Addr, bool) {
	parts := strings.Split(name, "-")
	for i := range parts {
		rest := strings.Join(parts[i:], "-")
		if a, err := netip.ParseAddr(rest); err == nil {
			return a, true
		}
		if a, err := netip.ParseAddr(strings.ReplaceAll(rest, "-", ":")); err == nil {
			return a, true
		}
	}
	return netip.Addr{}, false
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
