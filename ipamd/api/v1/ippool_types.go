package v1

import metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

// IPPoolSpec declares which addresses of a subnet pods may get, and where the pool applies.
type IPPoolSpec struct {
	// Subnet is the L3 subnet of the pool in CIDR form, e.g. 10.250.1.0/24 or fd00:250::/64.
	// IPv6 subnets must be /64 or longer.
	// +kubebuilder:validation:MinLength=3
	// +kubebuilder:validation:XValidation:rule="isCIDR(self)",message="spec.subnet must be a CIDR such as 10.250.1.0/24"
	Subnet string `json:"subnet"`
	// IPs are the addresses of Subnet this pool hands out: single addresses ("10.250.1.7")
	// or inclusive ranges ("10.250.1.10-10.250.1.99"). Empty means the whole subnet
	// except its network and broadcast addresses and the gateway.
	// +optional
	// +kubebuilder:validation:MaxItems=4096
	// +kubebuilder:validation:items:MaxLength=90
	// +kubebuilder:validation:XValidation:rule="self.all(x, isIP(x) || (x.split('-').size() == 2 && isIP(x.split('-')[0]) && isIP(x.split('-')[1])))",message="each entry must be an IP address or an inclusive range such as 10.250.1.10-10.250.1.99"
	IPs []string `json:"ips,omitempty"`
	// ExcludeIPs are never handed out, in the same forms as IPs.
	// +optional
	// +kubebuilder:validation:MaxItems=4096
	// +kubebuilder:validation:items:MaxLength=90
	// +kubebuilder:validation:XValidation:rule="self.all(x, isIP(x) || (x.split('-').size() == 2 && isIP(x.split('-')[0]) && isIP(x.split('-')[1])))",message="each entry must be an IP address or an inclusive range such as 10.250.1.10-10.250.1.99"
	ExcludeIPs []string `json:"excludeIPs,omitempty"`
	// Gateway is the default gateway given to pods; it is never handed out.
	// +optional
	// +kubebuilder:validation:XValidation:rule="isIP(self)",message="spec.gateway must be an IP address"
	Gateway string `json:"gateway,omitempty"`
	// Routes are added in the pod for addresses from this pool.
	// +optional
	Routes []Route `json:"routes,omitempty"`
	// Vlan is the 802.1q VLAN ID of the underlay network (0: untagged).
	// +optional
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=4094
	Vlan int32 `json:"vlan,omitempty"`
	// Default marks a cluster default pool, used when nothing else names a pool.
	// +optional
	Default bool `json:"default,omitempty"`
	// NodeAffinity limits the pool to nodes whose labels match.
	// +optional
	NodeAffinity *metav1.LabelSelector `json:"nodeAffinity,omitempty"`
	// NamespaceAffinity limits the pool to pods in namespaces whose labels match.
	// +optional
	NamespaceAffinity *metav1.LabelSelector `json:"namespaceAffinity,omitempty"`
	// PodAffinity limits the pool to pods whose labels match.
	// +optional
	PodAffinity *metav1.LabelSelector `json:"podAffinity,omitempty"`
	// MultusNames limits the pool to these NetworkAttachmentDefinitions ("namespace/name" or "name").
	// +optional
	MultusNames []string `json:"multusNames,omitempty"`
}

// IPPoolStatus is the pool's allocation state, kept compact on purpose.
type IPPoolStatus struct {
	// Allocated is the set of allocated addresses as comma-separated runs of offsets from
	// the subnet's network address, e.g. "2-41,57,60-61". Written only by ipamd.
	// +optional
	Allocated string `json:"allocated,omitempty"`
	// AllocatedIPCount is how many addresses are allocated.
	// +optional
	AllocatedIPCount int64 `json:"allocatedIPCount"`
	// TotalIPCount is how many addresses the pool can hand out (saturates at 2^63-1).
	// +optional
	TotalIPCount int64 `json:"totalIPCount"`
	// Quarantined addresses were found in use on the wire by another host; they are not
	// handed out until the time given, so a retried ADD gets another address.
	// +optional
	Quarantined []QuarantinedIP `json:"quarantined,omitempty"`
	// Cursor is the offset after the address handed out last: every node continues from
	// there, so an address just freed is handed out again only once the rest of the pool
	// has been, and a sandbox still being torn down elsewhere (or a peer's ARP cache) has
	// time to let go of it. Kept in the status so it is one for all nodes and restarts.
	// A decimal string: offsets of an IPv6 /64 do not fit an int64.
	// +optional
	Cursor string `json:"cursor,omitempty"`
}

// QuarantinedIP is an address kept out of allocation for a while.
type QuarantinedIP struct {
	IP string `json:"ip"`
	// MAC is the hardware address that answered for IP.
	// +optional
	MAC   string      `json:"mac,omitempty"`
	Until metav1.Time `json:"until"`
}

// IPPool is a set of addresses of one subnet that pods get their addresses from.
// +kubebuilder:object:root=true
// +kubebuilder:resource:scope=Cluster,shortName=ipp,categories=underpool
// +kubebuilder:subresource:status
// +kubebuilder:printcolumn:name="Subnet",type=string,JSONPath=`.spec.subnet`
// +kubebuilder:printcolumn:name="Gateway",type=string,JSONPath=`.spec.gateway`
// +kubebuilder:printcolumn:name="Total",type=integer,JSONPath=`.status.totalIPCount`
// +kubebuilder:printcolumn:name="Allocated",type=integer,JSONPath=`.status.allocatedIPCount`
// +kubebuilder:printcolumn:name="Default",type=boolean,JSONPath=`.spec.default`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type IPPool struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   IPPoolSpec   `json:"spec"`
	Status IPPoolStatus `json:"status,omitempty"`
}

// IPPoolList is a list of IPPools.
// +kubebuilder:object:root=true
type IPPoolList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []IPPool `json:"items"`
}
