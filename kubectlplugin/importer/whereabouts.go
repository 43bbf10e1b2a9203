package importer

import (
	"context"
	"fmt"
	"net/netip"

	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// whereabouts' kinds (whereabouts.cni.cncf.io/v1alpha1), read as unstructured.
var (
	whereaboutsGV          = schema.GroupVersion{Group: "whereabouts.cni.cncf.io", Version: "v1alpha1"}
	whereaboutsPoolGVK     = whereaboutsGV.WithKind("IPPool")
	whereaboutsOverlapGVK  = whereaboutsGV.WithKind("OverlappingRangeIPReservation")
	whereaboutsDefaultName = "net1" // the interface when an allocation records none (whereabouts before 0.6)
)

// whereaboutsReader turns whereabouts' objects into the peer state: the IPPools (spec,
// with the gateway and routes of the NetworkAttachmentDefinitions that use their range,
// and allocations), then the OverlappingRangeIPReservations checked against them.
type whereaboutsReader struct {
	st        *peerState
	prefix    string
	held      map[netip.Addr]bool                   // every address an IPPool allocates
	reserved  map[netip.Addr]whereaboutsReservation // the reservations of held addresses
	networks  []whereaboutsNetwork                  // the NADs' whereabouts ipam configs
	defaultIf bool                                  // some allocation recorded no interface
}

func readWhereabouts(ctx context.Context, c client.Reader, prefix string) (*peerState, error) {
	pools, err := listPeer(ctx, c, whereaboutsPoolGVK)
	if err != nil {
		return nil, err
	}
	reservations, err := listPeer(ctx, c, whereaboutsOverlapGVK)
	if err != nil {
		return nil, err
	}
	nads, err := listPeer(ctx, c, nadGVK)
	if err != nil {
		return nil, err
	}
	if len(pools) == 0 {
		return nil, fmt.Errorf("found no whereabouts IPPool (ippools.%s): is whereabouts installed in this cluster (kubectl get ippools.whereabouts.cni.cncf.io -A)?", whereaboutsGV.Group)
	}
	r := &whereaboutsReader{st: &peerState{}, prefix: prefix, held: map[netip.Addr]bool{}, reserved: map[netip.Addr]whereaboutsReservation{}}
	r.st.notes = append(r.st.notes, "whereabouts keeps range_start, range_end and exclude in each NetworkAttachmentDefinition, not in its IPPools: each imported IPPool spans its whole range; narrow it with spec.ips/spec.excludeIPs before pods use it")
	r.networks = r.whereaboutsNetworks(nads)
	for i := range pools {
		if err := r.ipPool(&pools[i]); err != nil {
			return nil, err
		}
	}
	if r.defaultIf {
		r.st.notes = append(r.st.notes, fmt.Sprintf("some whereabouts allocations record no interface: they were imported as %s", whereaboutsDefaultName))
	}
	for i := range reservations {
		if err := r.reservation(&reservations[i]); err != nil {
			return nil, err
		}
	}
	r.sandboxFromReservations()
	return r.st, nil
}
