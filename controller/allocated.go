package controller

import (
	"context"
	"net/netip"
	"strings"

	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/core/allocator"
)

// +kubebuilder:rbac:groups=underpool.io,resources=poolallocations,verbs=get;list;watch;create;update;delete

// poolStates are the allocation states of pools by pool name, each the state of the pool
// incarnation listed with it (v1.StateOf): a pool with no PoolAllocation, or one left by an
// earlier pool of its name, holds what its status kept before PoolAllocations (usually
// nothing).
type poolStates map[string]v1.AllocationState

// readStates reads the PoolAllocations (from the cache: the controller is their one
// watcher) and keeps those of the pools given.
func readStates(ctx context.Context, r client.Reader, pools []v1.IPPool) (poolStates, error) {
	var allocs v1.PoolAllocationList
	if err := r.List(ctx, &allocs); err != nil {
		return nil, err
	}
	return v1.StatesOf(pools, allocs.Items), nil
}

// allocationUID is the UID to record in the pool's status.allocationUID: its own
// PoolAllocation's, once one exists (from the cache), else what is recorded already (a
// record is never dropped: a state deleted by hand must not look like one never made).
func allocationUID(ctx context.Context, r client.Reader, pool *v1.IPPool) types.UID {
	a := &v1.PoolAllocation{}
	if r.Get(ctx, client.ObjectKey{Name: pool.Name}, a) == nil && a.PoolUID == pool.UID {
		return a.UID
	}
	return pool.Status.AllocationUID
}

// migrated says whether the pool's status still carries the allocation state of before
// PoolAllocations (v1.LegacyState) while its own PoolAllocation, seeded from it, exists:
// the copy is stale from then on and goes.
func migrated(ctx context.Context, r client.Reader, pool *v1.IPPool) bool {
	if pool.Status.LegacyAllocated == "" && len(pool.Status.LegacyQuarantined) == 0 {
		return false
	}
	a := &v1.PoolAllocation{}
	return r.Get(ctx, client.ObjectKey{Name: pool.Name}, a) == nil && a.PoolUID == pool.UID
}

// stateCorrupt reports whether a pool's state.allocated cannot be trusted: it does not
// parse, or it names offsets outside the pool's subnet (allocator.ParseAllocated; checked
// without enumerating, so "0-4294967295" on a /24 costs what "1-2" does). Every
// controller path that reads state.allocated asks this first and iterates nothing of a
// corrupt one: the Invalid condition (conditions.go) tells the operator how to repair it.
func stateCorrupt(p *v1.IPPool, s *v1.AllocationState) bool {
	prefix, err := netip.ParsePrefix(strings.TrimSpace(p.Spec.Subnet))
	if err != nil {
		_, err = allocator.ParseRunSet(s.Allocated)
		return err != nil
	}
	_, err = allocator.ParseAllocated(prefix, s.Allocated)
	return err != nil
}

// heldCount is how many addresses a pool keeps from its Subnet: its state's count, or,
// when state.allocated is corrupt (its count could be 400,000 on a /24), every usable
// address of the pool, since ipamd hands none of them out until it is repaired (nothing
// when not even its spec parses).
func heldCount(p *v1.IPPool, s *v1.AllocationState) int64 {
	if !stateCorrupt(p, s) {
		return s.AllocatedIPCount
	}
	if view, err := allocator.NewPool(p.Name, &p.Spec); err == nil {
		return view.TotalCount()
	}
	return 0
}
