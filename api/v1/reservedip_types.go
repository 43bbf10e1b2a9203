package v1

import metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

// ReservedIPSpec lists addresses no pool may hand out.
type ReservedIPSpec struct {
	// IPs are single addresses or inclusive ranges ("10.250.1.10-10.250.1.20") of one
	// family, low end first. Each entry is checked on its own, so a refusal names its index
	// (spec.ips[1]); the order of an IPv6 range is checked by the validating webhook.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=4096
	// +kubebuilder:validation:items:MaxLength=90
	// +kubebuilder:validation:items:XValidation:rule="isIP(self) || (self.split('-').size() == 2 && isIP(self.split('-')[0]) && isIP(self.split('-')[1]) && ip(self.split('-')[0]).family() == ip(self.split('-')[1]).family())",message="must be an IP address or an inclusive range of one family such as 10.250.1.10-10.250.1.99 (no spaces, zones or IPv4-mapped IPv6 addresses: write 10.250.1.10, not ::ffff:10.250.1.10)"
	// +kubebuilder:validation:items:XValidation:rule="!(self.split('-').size() == 2 && isIP(self.split('-')[0]) && isIP(self.split('-')[1]) && ip(self.split('-')[0]).family() == 4 && ip(self.split('-')[1]).family() == 4) || int(self.split('-')[0].split('.')[0]) * 16777216 + int(self.split('-')[0].split('.')[1]) * 65536 + int(self.split('-')[0].split('.')[2]) * 256 + int(self.split('-')[0].split('.')[3]) <= int(self.split('-')[1].split('.')[0]) * 16777216 + int(self.split('-')[1].split('.')[1]) * 65536 + int(self.split('-')[1].split('.')[2]) * 256 + int(self.split('-')[1].split('.')[3])",messageExpression="'range ' + self + ' is reversed: write ' + self.split('-')[1] + '-' + self.split('-')[0]"
	IPs []string `json:"ips"`
}

// ReservedIPStatus reports reserved addresses that were already in use when reserved.
type ReservedIPStatus struct {
	// InUse lists reserved addresses still held by a pod ("ip namespace/pod").
	// +optional
	InUse []string `json:"inUse,omitempty"`
}

// ReservedIP keeps addresses out of every pool.
// +kubebuilder:object:root=true
// +kubebuilder:resource:scope=Cluster,shortName=rip,categories=underpool
// +kubebuilder:subresource:status
// +kubebuilder:printcolumn:name="IPs",type=string,JSONPath=`.spec.ips`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type ReservedIP struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   ReservedIPSpec   `json:"spec"`
	Status ReservedIPStatus `json:"status,omitempty"`
}

// ReservedIPList is a list of ReservedIPs.
// +kubebuilder:object:root=true
type ReservedIPList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ReservedIP `json:"items"`
}
