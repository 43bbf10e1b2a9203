package service_test

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	testingclock "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/core/allocator"
	"github.com/underpool/underpool/ipamd/service"
	"github.com/underpool/underpool/ipamd/store"
	"github.com/underpool/underpool/rpc"
)

// Tests of the prefetched address per pool (store/prefetch.go): an ADD on a node that keeps
// allocating from a pool makes only its Endpoint write, with the release protocol's bounds
// kept.

// blockPoolWrites fails every allocation state write while *on is true: what an ADD or a
// DEL still does then, it does without writing its pool.
func blockPoolWrites(on *bool) *interceptor.Funcs {
	refuse := func(obj client.Object) error {
		if _, state := obj.(*v1.PoolAllocation); state && *on {
			return errors.New("test: allocation state writes are blocked")
		}
		return nil
	}
	return &interceptor.Funcs{
		Create: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.CreateOption) error {
			if err := refuse(obj); err != nil {
				return err
			}
			return c.Create(ctx, obj, opts...)
		},
		Update: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.UpdateOption) error {
			if err := refuse(obj); err != nil {
				return err
			}
			return c.Update(ctx, obj, opts...)
		},
	}
}

// prefetching is a node's ipamd with the prefetch on (ipamd's default), on clk.
func prefetching(w *world, node string, clk *testingclock.FakeClock) *service.Service {
	svc := onClock(w.ipamd(node, nil), clk, store.DefaultWindow)
	svc.Pools.(*store.PoolCommitter).Prefetch = true
	return svc
}

// waitAllocated waits until the pool's state holds want addresses: a prefetch's commit
// lands in the background.
func (w *world) waitAllocated(pool string, want int64) {
	w.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		st := w.stateAsIs(pool)
		if st.AllocatedIPCount == want {
			return
		}
		if time.Now().After(deadline) {
			w.t.Fatalf("pool %s holds %d addresses (%q), want %d", pool, st.AllocatedIPCount, st.Allocated, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func podsOn(w *world, node string, names ...string) []*corev1.Pod {
	var pods []*corev1.Pod
	for _, n := range names {
		p := podObj("ns", n, node, nil)
		w.create(p)
		pods = append(pods, p)
	}
	return pods
}

// Two ADDs in a row make the node busy with the pool: the next address is committed
// behind them, and a third ADD gets it with no pool write at all (every state write
// fails meanwhile, and the ADD still succeeds). Without the prefetch it fails.
func TestAnADDOnANodeBusyWithAPoolMakesNoPoolWrite(t *testing.T) {
	blocked := false
	w := newWorld(t, blockPoolWrites(&blocked), nsObj("ns"), nodeObj("n1"), newPoolObj("p", "10.250.1.0/24"))
	pods := podsOn(w, "n1", "a", "b", "c")
	svc := prefetching(w, "n1", testingclock.NewFakeClock(time.Now()))
	add(t, svc, pods[0], "ctr-a", "p")
	add(t, svc, pods[1], "ctr-b", "p")
	w.waitAllocated("p", 3) // a's, b's, and the one prefetched behind b

	blocked = true
	got := add(t, svc, pods[2], "ctr-c", "p")
	blocked = false
	if ep := w.endpoint("ns", "c"); ep == nil || len(ep.Status.Interfaces) != 1 || ep.Status.Interfaces[0].IPs[0].Address != got {
		t.Fatalf("c's Endpoint = %+v, want it to hold %s", ep, got)
	}
	w.requireOneOwner()
	taken := w.stateAsIs("p")
	if taken.AllocatedIPCount < 3 {
		t.Fatalf("pool p holds %q after c's ADD: c's address is not allocated", taken.Allocated)
	}
}

// A prefetched address no ADD takes within PrefetchIdle is freed: the pool holds what
// the Endpoints do again.
func TestAPrefetchedAddressNoADDTakesIsFreed(t *testing.T) {
	w := newWorld(t, nil, nsObj("ns"), nodeObj("n1"), newPoolObj("p", "10.250.1.0/24"))
	pods := podsOn(w, "n1", "a", "b")
	clk := testingclock.NewFakeClock(time.Now())
	svc := prefetching(w, "n1", clk)
	add(t, svc, pods[0], "ctr-a", "p")
	add(t, svc, pods[1], "ctr-b", "p")
	w.waitAllocated("p", 3)

	pools := svc.Pools.(*store.PoolCommitter)
	pools.ExpirePrefetched(context.Background())
	w.waitAllocated("p", 3) // not yet: it waited less than PrefetchIdle
	clk.Step(store.DefaultPrefetchIdle)
	pools.ExpirePrefetched(context.Background())
	w.waitAllocated("p", 2)
	w.requireOneOwner()
}

// The address a prefetch committed is handed out only while the Endpoint write that
// records it can still be sent within half a commit window of the prefetch's evidence,
// like any allocation's. Past a quarter window it is freed and the ADD allocates afresh;
// past half a window it is not even freed (the free would be late: the orphan sweeper
// frees it), and never handed out.
func TestAPrefetchedAddressPastItsDeadlineIsNotHandedOut(t *testing.T) {
	for _, tc := range []struct {
		name      string
		after     time.Duration
		allocated int64 // a, b, c, and the prefetched address when it was left to the sweeper
	}{
		{"past a quarter window: freed", store.DefaultWindow.WriteTimeout() + time.Second, 3},
		{"past half a window: left for the sweeper", time.Duration(store.DefaultWindow)/2 + time.Second, 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t, nil, nsObj("ns"), nodeObj("n1"), newPoolObj("p", "10.250.1.0/24"))
			pods := podsOn(w, "n1", "a", "b", "c")
			clk := testingclock.NewFakeClock(time.Now())
			svc := prefetching(w, "n1", clk)
			a := add(t, svc, pods[0], "ctr-a", "p")
			b := add(t, svc, pods[1], "ctr-b", "p")
			w.waitAllocated("p", 3)
			prefetchedAddr := unheldIn(t, w, "p", a, b)

			clk.Step(tc.after)
			if c := add(t, svc, pods[2], "ctr-c", "p"); c == prefetchedAddr {
				t.Fatalf("c got %s, the address prefetched %v before", c, tc.after)
			}
			w.requireOneOwner()
			w.requireAllocated("p", tc.allocated)
		})
	}
}

// unheldIn returns the one address the pool has allocated besides held.
func unheldIn(t *testing.T, w *world, pool string, held ...string) string {
	t.Helper()
	view, err := allocator.NewPool(pool, &w.pool(pool).Spec)
	if err != nil {
		t.Fatal(err)
	}
	st := w.stateAsIs(pool)
	allocated, err := view.ParseAllocated(st.Allocated)
	if err != nil {
		t.Fatal(err)
	}
	out := ""
	for _, r := range allocated.Runs() {
		for o := r.Lo; o <= r.Hi; o++ {
			addr := netip.PrefixFrom(view.Addr(o), view.Prefix.Bits()).String()
			if slices.Contains(held, addr) {
				continue
			}
			if out != "" {
				t.Fatalf("pool %s has two unheld addresses: %s and %s", pool, out, addr)
			}
			out = addr
		}
	}
	if out == "" {
		t.Fatalf("pool %s has no unheld address (%q)", pool, st.Allocated)
	}
	return out
}

// A pool filled to its last address while another node holds one prefetched: the ADD that
// finds it exhausted waits for that address to be freed (it is, a PrefetchIdle after the
// other node's last ADD) and gets it, instead of failing. Only a pool still full after
// that refuses.
func TestAnADDThatFindsThePoolFullWaitsForAnotherNodesPrefetch(t *testing.T) {
	small := newPoolObj("p", "10.250.1.0/24")
	small.Spec.IPs = []string{"10.250.1.1-10.250.1.20"}
	w := newWorld(t, nil, nsObj("ns"), nodeObj("n1"), nodeObj("n2"), small)
	clk := testingclock.NewFakeClock(time.Now())
	n1, n2 := prefetching(w, "n1", clk), prefetching(w, "n2", clk)
	for _, p := range podsOn(w, "n1", "a", "b") {
		add(t, n1, p, "ctr-"+p.Name, "p")
	}
	w.waitAllocated("p", 3) // a, b and the address n1 prefetched behind b
	var fill []string
	for i := range 17 {
		fill = append(fill, fmt.Sprintf("f%02d", i))
	}
	for _, p := range podsOn(w, "n2", fill...) {
		add(t, n2, p, "ctr-"+p.Name, "p")
	}
	w.requireAllocated("p", 20)

	last := podsOn(w, "n2", "last", "over")
	errc := allocating(n2, last[0], "ctr-last")
	waitingOn(t, clk, errc) // the ADD found the pool exhausted and waits
	clk.Step(store.DefaultPrefetchIdle)
	n1.Pools.(*store.PoolCommitter).ExpirePrefetched(context.Background())
	clk.Step(store.DefaultPrefetchIdle / 2)
	if err := <-errc; err != nil {
		t.Fatalf("the ADD that found the pool exhausted did not get the address freed meanwhile: %v", err)
	}
	w.requireOneOwner()
	w.requireAllocated("p", 20)

	// now it is full for good: the next ADD waits as long, then is refused
	errc = allocating(n2, last[1], "ctr-over")
	waitingOn(t, clk, errc)
	clk.Step(store.DefaultPrefetchIdle * 3 / 2)
	requireCode(t, <-errc, rpc.CodeNoAddress, "ipv4Pools")
}

// allocating runs an ADD in the background; its error arrives on the channel.
func allocating(svc *service.Service, pod *corev1.Pod, containerID string) chan error {
	errc := make(chan error, 1)
	go func() {
		_, err := svc.Allocate(context.Background(), addReq(pod, containerID, []string{"p"}, nil))
		errc <- err
	}()
	return errc
}

// waitingOn returns once something waits on clk, and fails if the ADD answered first.
func waitingOn(t *testing.T, clk *testingclock.FakeClock, errc chan error) {
	t.Helper()
	for !clk.HasWaiters() {
		select {
		case err := <-errc:
			t.Fatalf("the ADD answered at once (%v) instead of waiting for the prefetched addresses of other nodes", err)
		case <-time.After(time.Millisecond):
		}
	}
}
