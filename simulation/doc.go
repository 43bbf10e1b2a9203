// Package simulation is a deterministic simulation of ipamd's allocation and release
// paths (issue 17, "no address twice, whatever arrives late"). Three ipamds
// (service.Service on store.PoolCommitter and store.Endpoints, with their Reconcile,
// Allocate, Release, GC and Recycle), and the elected controller's gone-node recycling
// (service.RecycleGoneNodes), orphan sweeper (orphans.Sweeper) and pool finalizer
// (controller.PoolFinalizer) run their real code against one in-memory API:
// controller-runtime's fake client, which enforces resourceVersion on updates and
// conditional deletes and finalizers on delete, with one resourceVersion counter as the
// apiserver has. Around them, a model of the kubelets and the runtime creates and
// deletes pods (same names, new UIDs; StatefulSet pods), makes and tears down sandboxes,
// sends ADD, DEL and CNI GC (late, twice, or never), and the cluster deletes and makes
// again pools and Node objects (an earlier pool's PoolAllocation stays until the
// controller removes it, a window or more after the pool went, at a step of the
// scheduler's choosing).
//
// A pool's allocation state is its PoolAllocation, a plain object (no status
// subresource). No node watches PoolAllocations: an ipamd's informer cache holds none,
// and a cached read of one fails the run; ipamd reads them from the API. The
// controller's cache holds them, as its watch does.
//
// # Determinism
//
// Every API call, every informer read and every entry of a request into a pool's commit
// queue parks in a gate (gates.go). The scheduler takes a step only when the system is
// quiescent: every goroutine of the simulation is parked in a gate or blocked on a
// channel, a lock or the fake clock, as the runtime's own goroutine states say
// (goroutines.go; a wall-clock settle window would be flaky on a loaded machine).
// Parked calls are ordered by a stable key, the goroutine's identity (the operation the
// scheduler started, or the goroutine that created it) and its count of gates. A seed
// drives every choice (math/rand/v2 PCG), the fake clock (k8s.io/utils/clock/testing)
// is the only clock any actor reads, and the trace of every step is the proof: the test
// replays seeds and fails, naming the seed, when two runs' traces differ.
//
// # Faults
//
// A step lets one parked call proceed with a fate: answered; applied with the answer lost
// (the client sees a timeout); refused before applying (503, which the client cannot
// tell from a lost answer, or 429, which it can); held back for a while of fake time. A
// write lands within half the commit window of being sent or never (the apiserver's
// timeout and etcd's settling, store.Window); the client stops waiting after a quarter,
// or at its context's deadline (ipamd's 60 s per request, the record deadline of an
// allocation). Other steps advance the clock, refresh an actor's informer cache (caches
// are snapshots of the API taken at the step of the scheduler's choosing), kill a
// process (its requests on the wire may still land; nothing else of it reaches the API)
// or pause it, cancel the sweeper's lease mid-sweep and elect a new leader, make the
// plugin give up on an ADD that ipamd then finishes late, and change the world.
//
// # Invariants
//
// After every step (invariants.go): no address is held by two Endpoint records; every
// held address is allocated in its pool's state (v1.StateOf: the PoolAllocation of the
// very incarnation, UID, that handed it out); the address a live pod's running sandbox
// got from its ADD is still held by a record of that pod; no closed state holds an
// address. Once the faults stop and the run settles (every request answered, every
// node's ipamd running, the kubelets' DELs sent, then rounds of every loop a window
// apart): each pool's allocated addresses are exactly those its Endpoints hold, no
// record is left that recycling would judge gone, no mark left in the state's
// reclaiming, and no deleted pool kept by its finalizer once empty.
//
// A failure prints the seed, the step and the last 200 lines of the trace (with what the
// code under test logged), and how to replay it:
//
//	go test ./simulation -run TestSimulatedSchedules -sim.seed=N -v
//
// make soak runs seeds for as long as asked (SOAK=10m).
package simulation
