package v1

import metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

// ReservedIPSpec lists addresses no pool may hand out.
type ReservedIPSpec struct {
	// IPs are single addresses or inclusive ranges ("10.250.1.10-10.250.1.20").
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=4096
	// +kubebuilder:validation:items:MaxLength=90
	// +kubebuilder:validation:XValidation:rule="self.all(x, isIP(x) || (x.split('-').size() == 2 && isIP(x.split('-')[0]) && isIP(x.split('-')[1])))",message="each entry must be an IP address or an inclusive range such as 10.250.1.10-10.250.1.99"
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
