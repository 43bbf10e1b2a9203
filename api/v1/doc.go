// Package v1 holds the underpool.io/v1 API: IPPool, Subnet, ReservedIP and Endpoint.
//
// Pools keep their allocation state compact (runs of address offsets, see
// IPPoolStatus.Allocated) so that no object approaches etcd's size limit however full
// the pool is; who holds which address lives in one Endpoint per pod.
//
// +kubebuilder:object:generate=true
// +groupName=underpool.io
package v1
