package store

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/underpool/underpool/api/v1"
)

// seriesOf counts the series of reg labelled pool=name.
func seriesOf(t *testing.T, reg *prometheus.Registry, name string) int {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, f := range families {
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "pool" && l.GetValue() == name {
					n++
				}
			}
		}
	}
	return n
}

func committerWithRegistry(c client.Client) (*PoolCommitter, *prometheus.Registry) {
	reg := prometheus.NewRegistry()
	return NewPoolCommitter(c, c, c, nil, zap.NewNop(), NewMetrics(reg)), reg
}

// Every series labelled with a pool goes when the informer reports the pool deleted:
// allocations, releases, quarantined, pending re-marks and unusable counts; another
// pool's stay.
func TestADeletedPoolsSeriesGo(t *testing.T) {
	ctx := context.Background()
	bad := ippool("bad", "10.0.1.0/29")
	c := fakeAPI(t, ippool("gone", "10.0.0.0/24", "10.0.0.10-10.0.0.20"), ippool("kept", "10.0.2.0/24", "10.0.2.10-10.0.2.20"), bad,
		stateFor(bad, v1.AllocationState{Allocated: "not-a-run-set"}))
	p, reg := committerWithRegistry(c)
	for _, name := range []string{"gone", "kept"} {
		addr, _, err := allocate(p, ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		if err := release(p, ctx, name, addr.Addr()); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := p.Quarantine(ctx, Free{Pool: "gone", Addr: netip.MustParseAddr("10.0.0.11"), Evidence: p.now()}, "02:00:00:00:00:01", time.Now().Add(time.Hour), QuarantineLimits{}); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Remark(ctx, "bad", []netip.Addr{netip.MustParseAddr("10.0.1.1")}); err == nil {
		t.Fatal("re-marking in a pool with a corrupt status succeeded")
	}
	if n := seriesOf(t, reg, "gone"); n < 3 {
		t.Fatalf("pool gone has %d series before its deletion, want allocations, releases and quarantined", n)
	}
	if n := seriesOf(t, reg, "bad"); n < 2 {
		t.Fatalf("pool bad has %d series before its deletion, want pending re-mark and unusable", n)
	}
	kept := seriesOf(t, reg, "kept")
	p.Deleted("gone")
	p.Deleted("bad")
	for _, name := range []string{"gone", "bad"} {
		if n := seriesOf(t, reg, name); n != 0 {
			t.Errorf("%d series of the deleted pool %s are still exported", n, name)
		}
	}
	if n := seriesOf(t, reg, "kept"); n != kept {
		t.Errorf("pool kept has %d series after another pool's deletion, had %d", n, kept)
	}
}

// Without a delete event (the controller's committer hears none), a pool's series go when
// its worker finds the pool gone and drops its queue; asking a pool that never existed
// makes no series at all.
func TestSeriesGoWithTheQueueOfAGonePool(t *testing.T) {
	ctx := context.Background()
	c := fakeAPI(t, ippool("p", "10.0.0.0/24", "10.0.0.10-10.0.0.20"))
	p, reg := committerWithRegistry(c)
	addr, _, err := allocate(p, ctx, "p")
	if err != nil {
		t.Fatal(err)
	}
	gone := &v1.IPPool{}
	if err := c.Get(ctx, client.ObjectKey{Name: "p"}, gone); err != nil {
		t.Fatal(err)
	}
	gone.Finalizers = nil // deleted outright, as if its protection had been lifted by hand
	if err := c.Update(ctx, gone); err != nil {
		t.Fatal(err)
	}
	if err := c.Delete(ctx, gone); err != nil {
		t.Fatal(err)
	}
	if err := release(p, ctx, "p", addr.Addr()); err != nil {
		t.Fatal(err)
	}
	if _, _, err := allocate(p, ctx, "typo"); err == nil {
		t.Fatal("allocated from a pool that does not exist")
	}
	if n := queuesOnceIdle(t, p); n != 0 {
		t.Fatalf("%d commit queues kept for pools that are gone", n)
	}
	for _, name := range []string{"p", "typo"} {
		if n := seriesOf(t, reg, name); n != 0 {
			t.Errorf("%d series of the pool %s that does not exist are exported", n, name)
		}
	}
}

// A deleted pool's idle queue goes with the delete event, before any op finds it gone.
func TestDeleteEventDropsTheIdleQueue(t *testing.T) {
	c := fakeAPI(t, ippool("p", "10.0.0.0/24", "10.0.0.10-10.0.0.20"))
	p, _ := committerWithRegistry(c)
	if _, _, err := allocate(p, context.Background(), "p"); err != nil {
		t.Fatal(err)
	}
	if n := queuesOnceIdle(t, p); n != 1 {
		t.Fatalf("%d queues for one pool in use", n)
	}
	p.Deleted("p")
	if n := queuesOnceIdle(t, p); n != 0 {
		t.Fatalf("%d commit queues kept after the pool's delete event", n)
	}
}
