// Package controller is ipamd's cluster-wide mode (ipamd --mode=controller): the jobs no
// single node's ipamd can do, run by the elected replica of a Deployment. Run wires them
// into one controller-runtime manager, one small function each (jobs.go). It is the one
// watcher of PoolAllocations, where each pool's allocation state lives (no node watches
// them): every job that reads the state reads it there (allocated.go; none, or one of an
// earlier pool UID, holds nothing).
//
//   - webhook wiring: the validating webhook of package controller/webhook (IPPool,
//     Subnet and ReservedIP validation, its certificates, its registration), served by
//     every replica;
//   - finalizer: underpool.io/pool-protection keeps a pool with live allocations from
//     going; it is lifted only after a resourceVersion-guarded write closes the pool's
//     empty PoolAllocation (finalizer.go);
//   - conditions and counts: every pool's Exhausted, Overlapping and Invalid conditions,
//     and the counts of its PoolAllocation shown on its status, written at most once per
//     pool per CountsInterval (conditions.go, counts.go; a corrupt state.allocated is read
//     as such everywhere: allocated.go);
//   - gone pools' states: PoolAllocations whose pool is gone are deleted a commit window
//     after they are seen so (goneallocations.go);
//   - overlaps: Warning events and underpool_pools_overlapping for pools that share
//     addresses (overlaps.go);
//   - application pools: one IPPool per family carved from a Subnet for each Deployment
//     or StatefulSet whose pods name one, resized with it and deleted after it
//     (apppools.go);
//   - generated NADs: each UnderlayNetwork rendered (core/nadgen) into a
//     NetworkAttachmentDefinition in every namespace it names, owned by it, kept as
//     rendered (a hand edit is put back and reported), never over a NAD it does not own
//     (Ready=False and an event name it), deleted with it by the garbage collector
//     (networks.go, networknad.go, networkstatus.go);
//   - reserved-in-use report: a ReservedIP's status names the reserved addresses pods
//     still hold (reserved.go), and a ReservedIP with entries that do not parse gets an
//     event and underpool_reservedip_invalid (reservedreport.go);
//   - subnet status: how many addresses a Subnet offers and its pools hold
//     (subnetstatus.go);
//   - gone-node recycling: the Endpoints of nodes no ipamd looks after (gone, out of
//     service, unready past the grace) are judged by recycling's rules (gonenodes.go);
//   - the orphan loop: package controller/orphans's sweep, on its interval, freeing
//     addresses allocated and held by no Endpoint (orphanloop.go);
//   - the leader flag and readiness: underpool_controller_leader, and only the leader
//     reports ready (metrics.go, jobs.go).
//
// Its metrics are built from the registry the caller passes (NewMetrics, Options.Registry);
// the per-pool and per-Subnet capacity series are read from the cache at scrape time
// (capacity.go). It does not import the node daemon (ipamd/daemon): it reuses the store's
// and the service's release paths, as ipamd runs them.
package controller
