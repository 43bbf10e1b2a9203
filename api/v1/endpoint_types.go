package v1

import metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

// EndpointProtection is the finalizer every Endpoint carries while it holds addresses.
// Without it, deleting a namespace would delete its Endpoints at once while the pods
// still run out their grace period (or forever on an unreachable node), and the orphan
// sweeper would then free, and hand out again, addresses those pods still use. ipamd
// lifts it in the same write that drops the last attachment, so the Endpoint goes exactly
// when it holds nothing.
const EndpointProtection = "underpool.io/endpoint-protection"

// EndpointStatus is what one pod holds: one entry per (container, interface).
type EndpointStatus struct {
	// PodUID is the UID of the pod the addresses were given to.
	PodUID string `json:"podUID"`
	// Node is where the pod's attachments were made.
	Node string `json:"node"`
	// OwnerKind and OwnerName name the workload controlling the pod, when any.
	// +optional
	OwnerKind string `json:"ownerKind,omitempty"`
	// +optional
	OwnerName string `json:"ownerName,omitempty"`
	// Interfaces are the pod's attachments and the addresses each holds.
	// +optional
	Interfaces []EndpointInterface `json:"interfaces,omitempty"`
}

// EndpointInterface is one attachment: the addresses a container's interface holds.
type EndpointInterface struct {
	// ContainerID is the runtime's sandbox ID that the attachment belongs to.
	ContainerID string `json:"containerID"`
	// Interface is the interface name inside the pod, e.g. net1.
	Interface string `json:"interface"`
	// Network is the CNI network name of the attachment.
	// +optional
	Network string `json:"network,omitempty"`
	// PodUID is the UID of the pod incarnation the attachment was made for; a StatefulSet
	// successor (same name, new UID) inherits the attachment's addresses.
	// +optional
	PodUID string `json:"podUID,omitempty"`
	// IPs are the addresses held, one per family.
	IPs []EndpointIP `json:"ips"`
	// Created is when the attachment was made.
	Created metav1.Time `json:"created"`
	// Detached is when the attachment's sandbox was torn down (CNI DEL) while its
	// addresses stay held for the pod that follows under the same name: a StatefulSet
	// pod whose set still wants its ordinal. The next ADD for that pod name takes them
	// over; recycling frees them once the set no longer wants the ordinal.
	// +optional
	Detached *metav1.Time `json:"detached,omitempty"`
}

// EndpointIP is one address and the pool it came from.
type EndpointIP struct {
	// Address in CIDR form with the pool's prefix length, e.g. 10.250.1.7/24.
	Address string `json:"address"`
	// Pool is the IPPool the address came from.
	Pool string `json:"pool"`
	// PoolUID is the UID of that IPPool when the address was handed out: a release frees
	// the address only in that incarnation of the pool, never in one deleted and made
	// again under the same name (docs/design.md, release protocol). Empty in records
	// written before the field existed; those release by name.
	// +optional
	PoolUID string `json:"poolUID,omitempty"`
	// Gateway given with the address.
	// +optional
	Gateway string `json:"gateway,omitempty"`
	// Vlan of the pool.
	// +optional
	Vlan int32 `json:"vlan,omitempty"`
}

// Endpoint records, for one pod, every address it holds; named after the pod.
// Status is a plain field (no status subresource) so that one write creates a whole record.
// status.node is a selectable field: each ipamd lists and watches only its own node's
// Endpoints (field selector status.node=<node>), so its memory and watch traffic do not
// grow with the cluster.
// +kubebuilder:object:root=true
// +kubebuilder:selectablefield:JSONPath=`.status.node`
// +kubebuilder:resource:scope=Namespaced,shortName=upep,categories=underpool
// +kubebuilder:printcolumn:name="Interface",type=string,JSONPath=`.status.interfaces[0].interface`
// +kubebuilder:printcolumn:name="IP",type=string,JSONPath=`.status.interfaces[0].ips[0].address`
// +kubebuilder:printcolumn:name="Pool",type=string,JSONPath=`.status.interfaces[0].ips[0].pool`
// +kubebuilder:printcolumn:name="Node",type=string,JSONPath=`.status.node`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type Endpoint struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Status EndpointStatus `json:"status,omitempty"`
}

// EndpointList is a list of Endpoints.
// +kubebuilder:object:root=true
type EndpointList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Endpoint `json:"items"`
}
