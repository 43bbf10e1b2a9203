package service_test

import (
	"context"
	"sync/atomic"
	"testing"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/core/allocator"
	"github.com/underpool/underpool/ipamd/store"
)

// viewCounter counts the pool parses the service asks for after the commit.
type viewCounter struct {
	*store.PoolCommitter
	views atomic.Int64
}

func (c *viewCounter) View(ctx context.Context, name string) (*allocator.PoolView, error) {
	c.views.Add(1)
	return c.PoolCommitter.View(ctx, name)
}

// A fresh allocation answers with the pool's routes as its commit parsed the pool, not
// by parsing the pool again from the cache (issue 11: the IPAM path's per-ADD work); an
// ADD retried for an address already held reads the pool, and answers the same.
func TestAllocateResponseReusesTheCommittedPool(t *testing.T) {
	pool := newPoolObj("p4", "10.250.0.0/24")
	pool.Spec.Gateway = "10.250.0.1"
	pool.Spec.Routes = []v1.Route{{Dst: "10.250.100.0/24", Gw: "10.250.0.254"}}
	pod := podObj("ns", "a", "node-a", nil)
	w := newWorld(t, nil, pool, pod, nsObj("ns"), nodeObj("node-a"))
	svc := w.ipamd("node-a", nil)
	counter := &viewCounter{PoolCommitter: svc.Pools.(*store.PoolCommitter)}
	svc.Pools = counter

	first, err := svc.Allocate(context.Background(), addReq(pod, "c1", []string{"p4"}, nil))
	if err != nil {
		t.Fatal(err)
	}
	if n := counter.views.Load(); n != 0 {
		t.Fatalf("a fresh allocation parsed its pool %d more times after the commit, want 0", n)
	}
	if len(first.Routes) != 1 || first.Routes[0].Dst != "10.250.100.0/24" || first.Routes[0].Gw != "10.250.0.254" {
		t.Fatalf("routes %+v, want the pool's 10.250.100.0/24 via 10.250.0.254", first.Routes)
	}

	again, err := svc.Allocate(context.Background(), addReq(pod, "c1", []string{"p4"}, nil))
	if err != nil {
		t.Fatal(err)
	}
	if counter.views.Load() == 0 {
		t.Fatal("an ADD of an address already held answered without reading its pool's routes")
	}
	if len(again.Routes) != 1 || again.Routes[0] != first.Routes[0] || again.IPs[0] != first.IPs[0] {
		t.Fatalf("retried ADD answered %+v, want %+v", again, first)
	}
}
