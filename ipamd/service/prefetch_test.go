package service_test

import (
	"context"
	"errors"
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
// allocating from a pool makes only its Endpoint write, and a DEL only its own, with the
// release protocol's bounds kept.

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

// A DEL on a node busy with the pool keeps its address for the next ADD instead of
// freeing it: with every state write failing, the DEL succeeds and the next ADD gets that
// very address. No address is held twice, and the pool holds exactly what the Endpoints do
// once the prefetch has nothing left to give.
func TestADELsAddressIsKeptForTheNextADD(t *testing.T) {
	blocked := false
	small := newPoolObj("p", "10.250.1.0/24")
	small.Spec.IPs = []string{"10.250.1.1-10.250.1.20"} // 20: no prefetch once 16 or fewer are free
	small.UID = "uid-p"                                 // as the API gives every pool: a DEL keeps only what names its pool's incarnation
	w := newWorld(t, blockPoolWrites(&blocked), nsObj("ns"), nodeObj("n1"), small)
	pods := podsOn(w, "n1", "a", "b", "c", "d", "e")
	clk := testingclock.NewFakeClock(time.Now())
	svc := prefetching(w, "n1", clk)
	held := map[string]string{}
	for i, p := range pods[:4] {
		held[p.Name] = add(t, svc, p, "ctr-"+p.Name, "p")
		if i == 1 {
			w.waitAllocated("p", 3) // the prefetch behind b
		}
	}
	// a, b, c, d hold four, and 16 are free: nothing more is prefetched
	w.waitAllocated("p", 4)

	blocked = true
	del(t, svc, pods[0], "ctr-a")
	e := add(t, svc, pods[4], "ctr-e", "p")
	blocked = false
	if e != held["a"] {
		t.Fatalf("e got %s, want %s, the address a's DEL kept", e, held["a"])
	}
	w.requireOneOwner()
	w.requireAllocated("p", 4)
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
	clk.Step(store.PrefetchIdle)
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

// A pod that asks for a fixed address, made again on a node busy with its pool, gets the
// address its predecessor's DEL kept moments before, at once and with no pool write (every
// state write fails meanwhile): the kept address goes to the request that names it.
func TestAFixedAddressKeptByADELGoesToThePodThatAsksForIt(t *testing.T) {
	blocked := false
	small := newPoolObj("p", "10.250.1.0/24")
	small.Spec.IPs = []string{"10.250.1.1-10.250.1.20"} // no prefetch once 16 or fewer are free
	small.UID = "uid-p"
	w := newWorld(t, blockPoolWrites(&blocked), nsObj("ns"), nodeObj("n1"), small)
	pods := podsOn(w, "n1", "a", "fixed", "b", "c", "again")
	svc := prefetching(w, "n1", testingclock.NewFakeClock(time.Now()))
	ask := func(pod *corev1.Pod) string {
		t.Helper()
		resp, err := svc.Allocate(context.Background(), &rpc.AllocateRequest{ContainerID: "ctr-" + pod.Name, IfName: "net1",
			Network: "under", Pod: rpc.Pod{Namespace: "ns", Name: pod.Name, UID: string(pod.UID)}, IPv4Pools: []string{"p"},
			RequestedIPs: []string{"10.250.1.7"}})
		if err != nil {
			t.Fatalf("ADD of %s asking for 10.250.1.7: %v", pod.Name, err)
		}
		return resp.IPs[0].Address
	}
	add(t, svc, pods[0], "ctr-a", "p")
	ask(pods[1])
	w.waitAllocated("p", 3) // a, fixed, and the address prefetched behind them
	add(t, svc, pods[2], "ctr-b", "p")
	w.waitAllocated("p", 4) // b took it; the next is prefetched
	add(t, svc, pods[3], "ctr-c", "p")
	w.requireAllocated("p", 4) // c took that; 16 free: nothing more prefetched

	blocked = true
	del(t, svc, pods[1], "ctr-fixed")
	got := ask(pods[4])
	blocked = false
	if got != "10.250.1.7/24" {
		t.Fatalf("again got %s, want 10.250.1.7/24", got)
	}
	w.requireOneOwner()
	w.requireAllocated("p", 4)
}
