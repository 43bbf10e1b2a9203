// Package v1 holds the underpool.io/v1 API: the CRD types (IPPool, Subnet, ReservedIP,
// Endpoint, UnderlayNetwork, PoolAllocation) with their printer columns and status counts, the pool
// protection finalizer, the label and annotation of generated NetworkAttachmentDefinitions,
// and every annotation key users write with its strict parser (annotations.go). It depends
// on no other underpool package: the daemon, the controller, the plugins and the kubectl
// plugin all read it.
//
// Pools keep their allocation state compact (runs of address offsets, see
// AllocationState.Allocated) so that no object approaches etcd's size limit however full
// the pool is, and apart from the pool, in a PoolAllocation no node watches; who holds
// which address lives in one Endpoint per pod.
//
// +kubebuilder:object:generate=true
// +groupName=underpool.io
package v1
