package v1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

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
	// Vlan is the 802.1q VLAN ID of the underlay network (0: none of its own). The
	// meta-plugin puts a macvlan or ipvlan pod's link on <master>.<vlan>, making that
	// interface when it is missing and removing it with the last pod (an operator's is kept);
	// an sriov VF gets it as its vlan. All pools of one attachment must agree.
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

// IPPoolStatus is what users read of the pool in `kubectl get ippools`: its counts, kept
// by the elected controller from the pool's PoolAllocation at a bounded rate, and its
// conditions. The allocation state itself lives in the PoolAllocation of the same name,
// which no node watches: a commit on one node is no event on any other
// (docs/design.md, "Allocation state at 5000 nodes").
type IPPoolStatus struct {
	// AllocatedIPCount is how many addresses are allocated.
	// +optional
	AllocatedIPCount int64 `json:"allocatedIPCount"`
	// TotalIPCount is how many addresses the pool can hand out (saturates at 2^63-1).
	// +optional
	TotalIPCount int64 `json:"totalIPCount"`
	// FreeIPCount is how many of them are neither allocated nor quarantined. Addresses
	// that ReservedIPs or overlapping pools keep out of allocation still count as free
	// here; the Exhausted condition counts them as taken.
	// +optional
	FreeIPCount int64 `json:"freeIPCount"`
	// Usage is the share of the pool allocated or quarantined, as a whole percentage
	// rounded down ("100%" only when nothing is free), for `kubectl get ippools`.
	// +optional
	Usage string `json:"usage,omitempty"`
	// QuarantinedIPCount is how many addresses are quarantined (the PoolAllocation names them).
	// +optional
	QuarantinedIPCount int64 `json:"quarantinedIPCount,omitempty"`
	// HeldOutsideSpec are offsets (runs, as in AllocationState.Allocated) the pool's state
	// holds that its spec no longer covers (a spec narrowed past the webhook): pods still
	// hold them, so every other pool keeps them out of allocation. Kept by the controller.
	// +optional
	HeldOutsideSpec string `json:"heldOutsideSpec,omitempty"`
	// AllocationUID is the UID of the pool's PoolAllocation, recorded by the controller once
	// it exists. From then on no ipamd makes the pool a new, empty state: a state deleted by
	// hand would otherwise restart empty and hand out addresses pods hold. Such a pool hands
	// nothing out (and, deleted, stays) until its PoolAllocation is restored.
	// +optional
	AllocationUID types.UID `json:"allocationUID,omitempty"`
	// LegacyAllocated and LegacyQuarantined are where underpool kept the allocation state
	// before PoolAllocations (status.allocated, status.quarantined). They are read only to
	// seed a pool's first PoolAllocation, so an upgrade keeps every address its pods hold
	// (an empty first state would let one node hand out another's address before that
	// node's ipamd re-marked it); the controller clears them once the pool has one.
	// Deprecated: never written by this version except to clear them.
	// +optional
	LegacyAllocated string `json:"allocated,omitempty"`
	// +optional
	LegacyQuarantined []QuarantinedIP `json:"quarantined,omitempty"`
	// Conditions are kept by the elected controller, from what it reads: Exhausted,
	// Overlapping and Invalid (see the PoolCondition constants). ipamd never writes them.
	// +optional
	// +listType=map
	// +listMapKey=type
	// +patchStrategy=merge
	// +patchMergeKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty" patchStrategy:"merge" patchMergeKey:"type"`
}

// ShowCounts copies the counts of an allocation state into the status users read.
func (s *IPPoolStatus) ShowCounts(a *AllocationState) {
	s.TotalIPCount, s.AllocatedIPCount, s.FreeIPCount = a.TotalIPCount, a.AllocatedIPCount, a.FreeIPCount
	s.QuarantinedIPCount = int64(len(a.Quarantined))
	s.Usage = usage(a.TotalIPCount, a.FreeIPCount)
}

// CountsEqual says whether the status shows the counts of a.
func (s *IPPoolStatus) CountsEqual(a *AllocationState) bool {
	return s.TotalIPCount == a.TotalIPCount && s.AllocatedIPCount == a.AllocatedIPCount && s.FreeIPCount == a.FreeIPCount &&
		s.QuarantinedIPCount == int64(len(a.Quarantined)) && s.Usage == usage(a.TotalIPCount, a.FreeIPCount)
}

// PoolProtection is the finalizer that keeps a pool with live allocations from going.
// ipamd hands out nothing from a pool that lacks it: a pool deleted before it landed
// would go at once with its addresses held, and one made again under the same name would
// hand them out a second time.
const PoolProtection = "underpool.io/pool-protection"

// Condition types of an IPPool.
const (
	// PoolExhausted is True when every usable address is allocated, quarantined, reserved
	// or shared with another pool: the pool hands nothing out.
	PoolExhausted = "Exhausted"
	// PoolOverlapping is True when the pool shares addresses with another IPPool; ipamd
	// hands out none of them from either until they are separated.
	PoolOverlapping = "Overlapping"
	// PoolInvalid is True when the spec does not parse or status.allocated is corrupt:
	// ipamd hands nothing out of the pool.
	PoolInvalid = "Invalid"
)

// QuarantinedIP is an address kept out of allocation for a while.
type QuarantinedIP struct {
	IP string `json:"ip"`
	// MAC is the hardware address that answered for IP.
	// +optional
	MAC   string      `json:"mac,omitempty"`
	Until metav1.Time `json:"until"`
}

// IPPool is a set of addresses of one subnet that pods get their addresses from.
//
// An ipamd of the release before PoolAllocations would still write status.allocated during
// a rolling upgrade, keeping a second allocation state beside the new one: two nodes could
// then hand out one address. So the field can only stay as it is or go. The rule is on the
// whole object, whose old version every update has (on the status it would be skipped on
// a pool's first status write, which has no old status).
// +kubebuilder:validation:XValidation:rule="!has(self.status) || !has(self.status.allocated) || (has(oldSelf.status) && has(oldSelf.status.allocated) && oldSelf.status.allocated == self.status.allocated)",message="status.allocated is read-only: PoolAllocations hold the allocation state now; this write comes from an underpool-ipamd older than the cluster's CRDs: upgrade it"
// +kubebuilder:object:root=true
// +kubebuilder:resource:scope=Cluster,shortName=ipp,categories=underpool
// +kubebuilder:subresource:status
// +kubebuilder:printcolumn:name="Subnet",type=string,JSONPath=`.spec.subnet`
// +kubebuilder:printcolumn:name="Gateway",type=string,JSONPath=`.spec.gateway`
// +kubebuilder:printcolumn:name="Total",type=integer,JSONPath=`.status.totalIPCount`
// +kubebuilder:printcolumn:name="Allocated",type=integer,JSONPath=`.status.allocatedIPCount`
// +kubebuilder:printcolumn:name="Free",type=integer,JSONPath=`.status.freeIPCount`
// +kubebuilder:printcolumn:name="Used",type=string,JSONPath=`.status.usage`
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
