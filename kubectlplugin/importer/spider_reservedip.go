package importer

import (
	"fmt"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// reservedIPs reads each SpiderReservedIP into a ReservedIP of the same entries.
func (r *spiderReader) reservedIPs(list []unstructured.Unstructured) error {
	for i := range list {
		u := &list[i]
		var s struct {
			IPs []string `json:"ips"`
		}
		if err := fromField(u, "spec", &s); err != nil {
			return err
		}
		if len(s.IPs) == 0 {
			r.st.notes = append(r.st.notes, fmt.Sprintf("SpiderReservedIP %s lists no address: not imported", u.GetName()))
			continue
		}
		r.st.reserved = append(r.st.reserved, peerReserved{from: "SpiderReservedIP " + u.GetName(), name: poolName(r.prefix, u.GetName()), ips: s.IPs})
	}
	return nil
}
