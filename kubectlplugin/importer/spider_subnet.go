package importer

import (
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	v1 "github.com/underpool/underpool/api/v1"
)

// subnets reads each SpiderSubnet into a Subnet of the same addresses; its application
// pools (Spiderpool's auto pools) are SpiderIPPools, imported as such.
func (r *spiderReader) subnets(list []unstructured.Unstructured) error {
	for i := range list {
		u := &list[i]
		var s spiderPoolSpec
		if err := fromField(u, "spec", &s); err != nil {
			return err
		}
		r.st.subnets = append(r.st.subnets, peerSubnet{from: "SpiderSubnet " + u.GetName(), name: poolName(r.prefix, u.GetName()), spec: v1.SubnetSpec{
			Subnet: s.Subnet, IPs: s.IPs, ExcludeIPs: s.ExcludeIPs, Gateway: deref(s.Gateway), Routes: s.Routes, Vlan: int32(derefInt(s.Vlan)),
		}})
	}
	return nil
}
