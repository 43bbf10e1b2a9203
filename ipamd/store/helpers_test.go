package store

import (
	"context"
	"net/netip"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/core/allocator"
)

// allocate and release call the committer the way the service did before releases
// carried their evidence: tests of the queue alone need no window.
func allocate(p *PoolCommitter, ctx context.Context, pool string) (netip.Prefix, *allocator.PoolView, error) {
	g, err := p.Allocate(ctx, pool)
	return g.Addr, g.Pool, err
}

func release(p *PoolCommitter, ctx context.Context, pool string, addr netip.Addr) error {
	return p.Release(ctx, Free{Pool: pool, Addr: addr, Evidence: p.now()})
}

// stateFor is a PoolAllocation of pool holding st, to seed the fake API with.
func stateFor(pool *v1.IPPool, st v1.AllocationState) *v1.PoolAllocation {
	a := v1.AllocationOf(pool)
	a.State = st
	return a
}

// readState reads a pool's allocation state from the API: empty when it has none.
func readState(t *testing.T, c client.Reader, name string) v1.AllocationState {
	t.Helper()
	a := &v1.PoolAllocation{}
	if err := c.Get(context.Background(), client.ObjectKey{Name: name}, a); err != nil {
		if apierrors.IsNotFound(err) {
			return v1.AllocationState{}
		}
		t.Fatal(err)
	}
	return a.State
}

// editState changes a pool's allocation state in the API, as an operator would.
func editState(t *testing.T, c client.Client, name string, edit func(*v1.AllocationState)) {
	t.Helper()
	a := &v1.PoolAllocation{}
	if err := c.Get(context.Background(), client.ObjectKey{Name: name}, a); err != nil {
		t.Fatal(err)
	}
	edit(&a.State)
	if err := c.Update(context.Background(), a); err != nil {
		t.Fatal(err)
	}
}

// runsContain says whether the runs (as in state.allocated) hold offset o.
func runsContain(runs string, o uint64) bool {
	set, err := allocator.ParseRunSet(runs)
	return err == nil && set.Contains(o)
}
