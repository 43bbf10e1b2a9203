package v1

import metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

// SubnetSpec is a whole L2/L3 subnet; application pools are carved from it.
type SubnetSpec struct {
	// Subnet in CIDR form.
	// +kubebuilder:validation:XValidation:rule="isCIDR(self)",message="spec.subnet must be a CIDR such as 10.250.0.0/16"
	Subnet string `json:"subnet"`
	// IPs usable for pools carved from this subnet (single addresses or ranges); empty: all.
	// +optional
	// +kubebuilder:validation:MaxItems=4096
	// +kubebuilder:validation:items:MaxLength=90
	// +kubebuilder:validation:XValidation:rule="self.all(x, isIP(x) || (x.split('-').size() == 2 && isIP(x.split('-')[0]) && isIP(x.split('-')[1])))",message="each entry must be an IP address or an inclusive range such as 10.250.1.10-10.250.1.99"
	IPs []string `json:"ips,omitempty"`
	// ExcludeIPs are never given to pools carved from this subnet.
	// +optional
	// +kubebuilder:validation:MaxItems=4096
	// +kubebuilder:validation:items:MaxLength=90
	// +kubebuilder:validation:XValidation:rule="self.all(x, isIP(x) || (x.split('-').size() == 2 && isIP(x.split('-')[0]) && isIP(x.split('-')[1])))",message="each entry must be an IP address or an inclusive range such as 10.250.1.10-10.250.1.99"
	ExcludeIPs []string `json:"excludeIPs,omitempty"`
	// Gateway of the subnet.
	// +optional
	Gateway string `json:"gateway,omitempty"`
	// Routes every pod on this subnet gets (pool and pod routes override them per destination).
	// +optional
	Routes []Route `json:"routes,omitempty"`
	// Vlan is the 802.1q VLAN ID (0: untagged).
	// +optional
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=4094
	Vlan int32 `json:"vlan,omitempty"`
}

// SubnetStatus summarises the pools carved from the subnet.
type SubnetStatus struct {
	// TotalIPCount is how many addresses the subnet offers.
	// +optional
	TotalIPCount int64 `json:"totalIPCount"`
	// AllocatedIPCount is how many addresses pools of this subnet hold.
	// +optional
	AllocatedIPCount int64 `json:"allocatedIPCount"`
}

// Subnet is a whole underlay subnet, the source of automatically created application pools.
// +kubebuilder:object:root=true
// +kubebuilder:resource:scope=Cluster,shortName=ups,categories=underpool
// +kubebuilder:subresource:status
// +kubebuilder:printcolumn:name="Subnet",type=string,JSONPath=`.spec.subnet`
// +kubebuilder:printcolumn:name="Gateway",type=string,JSONPath=`.spec.gateway`
// +kubebuilder:printcolumn:name="Vlan",type=integer,JSONPath=`.spec.vlan`
// +kubebuilder:printcolumn:name="Total",type=integer,JSONPath=`.status.totalIPCount`
// +kubebuilder:printcolumn:name="Allocated",type=integer,JSONPath=`.status.allocatedIPCount`
type Subnet struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   SubnetSpec   `json:"spec"`
	Status SubnetStatus `json:"status,omitempty"`
}

// SubnetList is a list of Subnets.
// +kubebuilder:object:root=true
type SubnetList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Subnet `json:"items"`
}
