package v1

import (
	"math/bits"
	"strconv"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// PoolAllocation is an IPPool's allocation state: which addresses are handed out, where
// the next search starts, what is quarantined and what the orphan sweeper has marked. It
// has the pool's name and names the pool incarnation it belongs to.
//
// It is apart from the IPPool on purpose. Every node daemon watches IPPools (their specs);
// none watches PoolAllocations. An ipamd reads one when it first allocates from the pool,
// keeps the object of its own last write and writes with that resourceVersion; a conflict
// (another node wrote since) makes it read again. So a commit on one node is no event on
// any other, and what the apiserver sends per allocation does not grow with the number
// of nodes. Only the elected controller watches them (the sweeper, the conditions, the
// counts shown on the IPPool). docs/design.md, "Allocation state at 5000 nodes".
//
// Written by ipamd (allocations, frees, quarantine) and the elected controller (the
// sweeper's marks and frees, gone nodes). Every write is guarded by resourceVersion.
// +kubebuilder:object:root=true
// +kubebuilder:resource:scope=Cluster,shortName=ipalloc,categories=underpool
// +kubebuilder:printcolumn:name="Allocated",type=integer,JSONPath=`.state.allocatedIPCount`
// +kubebuilder:printcolumn:name="Free",type=integer,JSONPath=`.state.freeIPCount`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type PoolAllocation struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// PoolUID is the UID of the IPPool incarnation this state belongs to. A state naming
	// another UID is an earlier pool's of the same name: it is started afresh, never
	// served (a free handed out by that pool frees nothing here).
	PoolUID types.UID `json:"poolUID"`
	// Closed is set by the controller, on an empty state of a pool being deleted, in the
	// write just before it removes the pool's protection finalizer. Nothing is written to a
	// closed state: an ipamd that would mark an address in it (a late re-mark) fails
	// instead, so a pool never goes while its state holds an address.
	// +optional
	Closed bool `json:"closed,omitempty"`
	// State is the allocation state.
	// +optional
	State AllocationState `json:"state,omitempty"`
}

// PoolAllocationList is a list of PoolAllocations.
// +kubebuilder:object:root=true
type PoolAllocationList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []PoolAllocation `json:"items"`
}

// AllocationState is a pool's allocation state, kept compact on purpose.
type AllocationState struct {
	// Allocated is the set of allocated addresses as comma-separated runs of offsets from
	// the subnet's network address, e.g. "2-41,57,60-61".
	// +optional
	Allocated string `json:"allocated,omitempty"`
	// AllocatedIPCount is how many addresses are allocated.
	// +optional
	AllocatedIPCount int64 `json:"allocatedIPCount"`
	// TotalIPCount is how many addresses the pool can hand out (saturates at 2^63-1).
	// +optional
	TotalIPCount int64 `json:"totalIPCount"`
	// FreeIPCount is how many of them are neither allocated nor quarantined.
	// +optional
	FreeIPCount int64 `json:"freeIPCount"`
	// Quarantined addresses were found in use on the wire by another host; they are not
	// handed out until the time given, so a retried ADD gets another address.
	// +optional
	Quarantined []QuarantinedIP `json:"quarantined,omitempty"`
	// Cursor is the offset after the address handed out last: every node continues from
	// there, so an address just freed is handed out again only once the rest of the pool
	// has been, and a sandbox still being torn down elsewhere (or a peer's ARP cache) has
	// time to let go of it. A decimal string: offsets of an IPv6 /64 do not fit an int64.
	// +optional
	Cursor string `json:"cursor,omitempty"`
	// Reclaiming are offsets (runs, as in Allocated) that the orphan sweeper found
	// allocated while no Endpoint held them, and marked: the mark proves, while it stays,
	// that the address has not been freed and handed out again since. The sweeper frees a
	// marked address only after two more sweeps, each a commit window apart, still find
	// it unheld; any release of the address drops its mark in the same write
	// (docs/design.md, release protocol).
	// +optional
	Reclaiming string `json:"reclaiming,omitempty"`
}

// SetCounts sets the counts of the state from the pool's usable total and allocated
// count, with its quarantined addresses (none of them allocated) counted as used; every
// writer of the allocation state calls it, so the counts never disagree with the sets.
func (s *AllocationState) SetCounts(total, allocated int64) {
	s.TotalIPCount, s.AllocatedIPCount = total, allocated
	s.FreeIPCount = max(0, total-allocated-int64(len(s.Quarantined)))
}

// Usage is the share of the pool allocated or quarantined, as IPPoolStatus.Usage shows it.
func (s *AllocationState) Usage() string { return usage(s.TotalIPCount, s.FreeIPCount) }

// usage is the share of total that is not free, as a whole percentage rounded down, so
// "100%" means nothing is free; in 128 bits, as total may be near 2^63.
func usage(total, free int64) string {
	if total <= 0 {
		return ""
	}
	hi, lo := bits.Mul64(uint64(total-free), 100)
	pct, _ := bits.Div64(hi, lo, uint64(total))
	if free > 0 && pct >= 100 {
		pct = 99
	}
	return strconv.FormatUint(pct, 10) + "%"
}

// AllocationOf returns the first allocation state object of the pool: same name, the
// pool's UID, holding what the pool's status kept before PoolAllocations (LegacyState;
// usually nothing).
//
// It has no owner reference on purpose. The closed state of a pool that went must outlive
// the pool by a commit window: an ipamd that read the pool alive a moment before and found
// no state may still be about to create one, and only the closed state in the way (its
// create fails) stops it from serving a pool that is gone. Kubernetes' garbage collector
// would delete the state at once; the controller deletes it a window after its pool went.
func AllocationOf(pool *IPPool) *PoolAllocation {
	return &PoolAllocation{ObjectMeta: metav1.ObjectMeta{Name: pool.Name}, PoolUID: pool.UID, State: LegacyState(pool)}
}

// StateOf returns the allocation state of pool that alloc holds. When alloc is nil or
// belongs to another incarnation of the pool (an earlier one's, not yet collected), the
// pool has no state of its own yet: what its status kept before PoolAllocations existed,
// usually nothing (LegacyState).
func StateOf(pool *IPPool, alloc *PoolAllocation) AllocationState {
	if alloc == nil || alloc.PoolUID != pool.UID {
		return LegacyState(pool)
	}
	return alloc.State
}

// StatesOf matches listed PoolAllocations to listed pools by name and returns each pool's
// state by pool name (StateOf: a pool without its own holds its legacy state).
func StatesOf(pools []IPPool, allocs []PoolAllocation) map[string]AllocationState {
	byName := make(map[string]*PoolAllocation, len(allocs))
	for i := range allocs {
		byName[allocs[i].Name] = &allocs[i]
	}
	states := make(map[string]AllocationState, len(pools))
	for i := range pools {
		states[pools[i].Name] = StateOf(&pools[i], byName[pools[i].Name])
	}
	return states
}

// LegacyState is the allocation state a pool's status kept before PoolAllocations
// (status.allocated and status.quarantined): the seed of its first PoolAllocation.
func LegacyState(pool *IPPool) AllocationState {
	st := AllocationState{Allocated: pool.Status.LegacyAllocated}
	if len(pool.Status.LegacyQuarantined) > 0 {
		st.Quarantined = append([]QuarantinedIP(nil), pool.Status.LegacyQuarantined...)
	}
	return st
}

// ImportingAnnotation on an IPPool says its allocation state is still being written by
// `kubectl underpool import`: ipamd hands nothing out of it (it would start from an empty
// state and could hand out an imported live address) until the importer removes it.
const ImportingAnnotation = "underpool.io/importing"
