package service_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	testingclock "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/controller/orphans"
	"github.com/underpool/underpool/ipamd/service"
	"github.com/underpool/underpool/ipamd/store"
	"github.com/underpool/underpool/rpc"
)

// stallKey marks the context of a request whose first pool status write stalls.
type stallKey struct{}

// stallOnce holds the first allocation state write made under a stallKey context until
// released is closed, after telling arrived.
func stallOnce(arrived chan<- struct{}, released <-chan struct{}) *interceptor.Funcs {
	return stallFirst(arrived, released, func(obj client.Object) bool { _, state := obj.(*v1.PoolAllocation); return state })
}

// stallFirst holds the first update of an object that is() picks, made under a stallKey
// context, until released is closed, after telling arrived.
func stallFirst(arrived chan<- struct{}, released <-chan struct{}, is func(client.Object) bool) *interceptor.Funcs {
	stalled := false
	return &interceptor.Funcs{Update: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.UpdateOption) error {
		if is(obj) && ctx.Value(stallKey{}) != nil && !stalled {
			stalled = true
			close(arrived)
			<-released
		}
		return c.Update(ctx, obj, opts...)
	}}
}

// onClock puts a node's service and its pool committer on clk, with the window w.
func onClock(svc *service.Service, clk *testingclock.FakeClock, w store.Window) *service.Service {
	svc.Clock, svc.Window = clk, w
	pools := svc.Pools.(*store.PoolCommitter)
	pools.Clock, pools.Window = clk, w
	pools.Jitter = func(time.Duration) time.Duration { return 0 }
	pools.Patience = 24 * time.Hour // the clock jumps: only the window may stop a retry
	return svc
}

// Finding: a DEL whose pool write stalled past the orphan sweeps was applied again to
// fresh state after its conflict, and freed the address the sweeper had freed meanwhile
// and another pod now held. Under the release protocol the retry is planned after the
// free's window closed, so it is not sent: the new holder keeps its address.
func TestALateReleaseNeverFreesAnAddressHandedOutAgain(t *testing.T) {
	arrived, released := make(chan struct{}), make(chan struct{})
	single := newPoolObj("p", "10.250.1.0/24")
	single.Spec.IPs = []string{"10.250.1.5"} // b can only get what a gives back
	w := newWorld(t, stallOnce(arrived, released), nsObj("ns"), nodeObj("node-a"), nodeObj("node-b"), single)
	a, b := podObj("ns", "a", "node-a", nil), podObj("ns", "b", "node-b", nil)
	w.create(a)
	w.create(b)
	clk := testingclock.NewFakeClock(time.Now())
	window := store.Window(time.Minute)
	nodeA, nodeB := onClock(w.ipamd("node-a", nil), clk, window), onClock(w.ipamd("node-b", nil), clk, window)
	first := add(t, nodeA, a, "ctr-a", "p")

	// a's DEL drops its record, then its pool write stalls
	w.deletePod(a)
	delDone := make(chan error, 1)
	go func() {
		ctx := context.WithValue(context.Background(), stallKey{}, true)
		delDone <- nodeA.Release(ctx, &rpc.ReleaseRequest{ContainerID: "ctr-a", IfName: "net1",
			Pod: rpc.Pod{Namespace: "ns", Name: "a", UID: string(a.UID)}})
	}()
	<-arrived
	clk.Step(time.Duration(window))

	// meanwhile the sweeper reclaims the unheld address, and b is given it
	sweeper := &orphans.Sweeper{Cache: w.api, API: w.api, Writer: w.api, Log: zap.NewNop(), Window: window}
	for i := range 6 {
		if _, err := sweeper.Sweep(context.Background(), clk.Now().Add(time.Duration(i)*time.Hour), time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	if st := w.stateAsIs("p"); st.AllocatedIPCount != 0 { // not settled: the late free is still stalled
		t.Fatalf("pool p holds %q after the sweeps, want nothing", st.Allocated)
	}
	if got := add(t, nodeB, b, "ctr-b", "p"); got != first {
		t.Fatalf("b got %s, want the reclaimed %s", got, first)
	}

	close(released)
	if err := <-delDone; err != nil {
		t.Fatalf("the late DEL: %v (its record is gone: it succeeds, its free is its own affair)", err)
	}
	w.requireAllocated("p", 1)
	w.requireOneOwner()
}

// Finding: a late ADD of a force-deleted incarnation, or for a pod bound to another node,
// recorded the live pod's UID and this node against addresses the live pod does not use,
// and recycling later judged the live pod's own record replaced and freed it. Such an ADD
// is refused, naming both UIDs or both nodes, and allocates nothing.
func TestAnADDNotForThePodAsItIsNowIsRefused(t *testing.T) {
	w := newWorld(t, nil, nsObj("ns"), nodeObj("node-a"), nodeObj("node-b"), newPoolObj("p", "10.250.1.0/24"))
	dead := podObj("ns", "x", "node-b", nil)
	dead.UID = "uid-x-dead"
	live := podObj("ns", "x", "node-a", nil)
	live.UID = "uid-x-live"
	w.create(live)
	for _, tc := range []struct {
		name     string
		node     string
		uid      string
		mentions []string
	}{
		{"the ADD of a force-deleted incarnation, arriving late", "node-b", string(dead.UID), []string{"uid-x-dead", "uid-x-live"}},
		{"an ADD on a node the pod is not bound to", "node-b", string(live.UID), []string{"node-a", "node-b"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := w.ipamd(tc.node, nil).Allocate(context.Background(), &rpc.AllocateRequest{ContainerID: "late", IfName: "net1",
				Network: "under", Pod: rpc.Pod{Namespace: "ns", Name: "x", UID: tc.uid}, IPv4Pools: []string{"p"}})
			requireCode(t, err, rpc.CodeBadRequest, "pod")
			for _, m := range tc.mentions {
				if !strings.Contains(err.Error(), m) {
					t.Errorf("error %q does not name %s", err, m)
				}
			}
			w.requireAllocated("p", 0)
			if ep := w.endpoint("ns", "x"); ep != nil {
				t.Fatalf("a refused ADD left an Endpoint: %+v", ep.Status)
			}
		})
	}
	add(t, w.ipamd("node-a", nil), live, "ctr-live", "p")
	w.requireOneOwner()
}

// The same late ADD, on a node whose informer still shows the force-deleted incarnation:
// the cached pod matches the request, so only the API can tell. Before anything takes
// over or restamps an Endpoint that another incarnation stamped, the pod is read from the
// API; the late ADD of a StatefulSet pod would otherwise take the live pod's attachment
// over (a successor takes any record on its interface), and a plain pod's would stamp the
// live pod's Endpoint with a dead UID and the wrong node.
func TestALateADDSeenThroughAStaleCacheIsRefused(t *testing.T) {
	for _, tc := range []struct {
		name string
		sts  bool
	}{{"a StatefulSet pod", true}, {"a plain pod", false}} {
		t.Run(tc.name, func(t *testing.T) {
			set := statefulSet("ns", "db", 1, 0)
			w := newWorld(t, nil, nsObj("ns"), nodeObj("node-a"), nodeObj("node-b"), newPoolObj("p", "10.250.1.0/24"), set)
			var owner = set
			if !tc.sts {
				owner = nil
			}
			dead := podObj("ns", "db-0", "node-b", owner)
			dead.UID = "uid-dead"
			w.create(dead)
			staleB := w.freeze() // node b's informer: the dead incarnation, no Endpoint yet
			w.deletePod(dead)
			live := podObj("ns", "db-0", "node-a", owner)
			live.UID = "uid-live"
			w.create(live)
			addr := add(t, w.ipamd("node-a", nil), live, "ctr-live", "p")

			_, err := w.ipamd("node-b", staleB).Allocate(context.Background(), &rpc.AllocateRequest{ContainerID: "ctr-dead",
				IfName: "net1", Network: "under", Pod: rpc.Pod{Namespace: "ns", Name: "db-0", UID: "uid-dead"}, IPv4Pools: []string{"p"}})
			requireCode(t, err, rpc.CodeBadRequest, "pod")
			ep := w.endpoint("ns", "db-0")
			if ep == nil || ep.Status.Node != "node-a" || ep.Status.PodUID != "uid-live" || len(ep.Status.Interfaces) != 1 ||
				ep.Status.Interfaces[0].ContainerID != "ctr-live" || ep.Status.Interfaces[0].IPs[0].Address != addr {
				t.Fatalf("the live pod's Endpoint changed: %+v", ep)
			}
			w.requireAllocated("p", 1)
			w.requireOneOwner()
		})
	}
}
