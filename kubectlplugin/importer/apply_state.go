package importer

import (
	"context"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/core/allocator"
)

// addAllocated adds the offsets of add to the pool's allocation state (its PoolAllocation),
// on fresh reads until no other writer conflicts: ipamd writes an existing pool's state,
// and its own first write creates the object. Every write is guarded by the
// resourceVersion read, as every writer's is (docs/design.md, the release protocol): a
// mark in state.reclaiming still proves one allocation. An offset the state marks by then
// was handed out since the plan was made, to a pod the peer knows nothing of: it is
// refused, since both pods would then hold it. It returns the pool's UID.
func addAllocated(ctx context.Context, c client.Client, name string, add allocator.RunSet) (types.UID, error) {
	var uid types.UID
	raced := func(err error) bool { return apierrors.IsConflict(err) || apierrors.IsAlreadyExists(err) }
	err := retry.OnError(retry.DefaultRetry, raced, func() error {
		pool := &v1.IPPool{}
		if err := c.Get(ctx, client.ObjectKey{Name: name}, pool); err != nil {
			return err
		}
		view, err := allocator.NewPool(pool.Name, &pool.Spec)
		if err != nil {
			return fmt.Errorf("its spec no longer parses: %w", err)
		}
		cur, err := readAllocation(ctx, c, name)
		if err != nil {
			return err
		}
		if cur != nil && cur.PoolUID == pool.UID && cur.Closed {
			return fmt.Errorf("IPPool %s is being deleted (its PoolAllocation is closed): let it go, then import again", name)
		}
		state := v1.StateOf(pool, cur)
		set, err := view.ParseAllocated(state.Allocated)
		if err != nil {
			return fmt.Errorf("state.allocated %q does not parse: %w: fix it or delete the pool", state.Allocated, err)
		}
		if shared := add.Subtract(add.Subtract(set)); !shared.Empty() {
			return fmt.Errorf("%s was handed out since the import planned (the pool's state marks it allocated now): stop pods from using the pool during the import, then run it again",
				view.Addr(shared.Runs()[0].Lo))
		}
		for _, r := range add.Runs() {
			set.AddRun(r)
		}
		state.Allocated = set.String()
		state.SetCounts(view.TotalCount(), int64(set.Count()))
		uid = pool.UID
		return putState(ctx, c, pool, cur, state)
	})
	return uid, err
}

// readAllocation reads the PoolAllocation named name from the API; nil when there is none.
func readAllocation(ctx context.Context, c client.Reader, name string) (*v1.PoolAllocation, error) {
	cur := &v1.PoolAllocation{}
	if err := c.Get(ctx, client.ObjectKey{Name: name}, cur); apierrors.IsNotFound(err) {
		return nil, nil
	} else if err != nil {
		return nil, fmt.Errorf("reading PoolAllocation %s: %w", name, err)
	}
	return cur, nil
}

// putState writes state as pool's: an Update of cur with the resourceVersion read when cur
// is this pool's; otherwise a Create, after deleting cur when it is an earlier pool's of
// the same name (with its UID and resourceVersion as preconditions, so only what was read
// is deleted). Another writer in between makes the write conflict or find the object
// there: the caller reads again.
func putState(ctx context.Context, c client.Client, pool *v1.IPPool, cur *v1.PoolAllocation, state v1.AllocationState) error {
	if cur != nil && cur.PoolUID == pool.UID {
		cur.State = state
		return c.Update(ctx, cur)
	}
	if cur != nil {
		pre := client.Preconditions{UID: &cur.UID, ResourceVersion: &cur.ResourceVersion}
		if err := c.Delete(ctx, cur, pre); err != nil && !apierrors.IsNotFound(err) {
			return err
		}
	}
	fresh := v1.AllocationOf(pool)
	fresh.State = state
	return c.Create(ctx, fresh)
}
