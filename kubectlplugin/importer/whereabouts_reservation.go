package importer

import (
	"net/netip"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// reservation checks one OverlappingRangeIPReservation: one without the IPPool allocation
// is a leftover of an interrupted whereabouts ADD or DEL, naming an address no pool holds.
// It is reported as skipped; a matching one gives the allocation its sandbox when the
// IPPool's entry records none (sandboxFromReservations).
func (r *whereaboutsReader) reservation(u *unstructured.Unstructured) error {
	var s whereaboutsReservation
	if err := fromField(u, "spec", &s); err != nil {
		return err
	}
	addr, ok := reservationAddr(u.GetName())
	from := "whereabouts OverlappingRangeIPReservation " + u.GetNamespace() + "/" + u.GetName()
	if !ok {
		r.st.skipped = append(r.st.skipped, Skip{Address: u.GetName(), From: from, Pod: s.PodRef, Reason: "its name is not an address"})
		return nil
	}
	if !r.held[addr] {
		r.st.skipped = append(r.st.skipped, Skip{Address: addr.String(), From: from, Pod: s.PodRef, Reason: "no whereabouts IPPool allocates it (a leftover reservation)"})
		return nil
	}
	r.reserved[addr] = s
	return nil
}

type whereaboutsReservation struct {
	ContainerID string `json:"containerid"`
	PodRef      string `json:"podref"`
	IfName      string `json:"ifname"`
}

// sandboxFromReservations gives an allocation whose IPPool entry records no sandbox the
// one its address's reservation records, for the same pod (and interface, when both say).
func (r *whereaboutsReader) sandboxFromReservations() {
	for i := range r.st.allocs {
		a := &r.st.allocs[i]
		res, ok := r.reserved[a.ip]
		if !ok || a.containerID != "" || res.PodRef != a.namespace+"/"+a.pod || (res.IfName != "" && res.IfName != a.ifName) {
			continue
		}
		a.containerID = res.ContainerID
	}
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
