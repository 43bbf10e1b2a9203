package service_test

import (
	"context"
	"errors"
	"net/netip"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/rpc"
)

// A release decided on a stale read must not free an address that, by the time of the
// write, another pod holds: the write that would have removed the record finds it gone
// and frees nothing (invariant 7). Each case replays a path that freed twice before.
func TestStaleReleaseNeverFreesTwice(t *testing.T) {
	for _, tc := range []struct {
		name   string
		replay func(w *world, stale *corev1.Pod, cache client.Reader)
	}{
		{"second DEL within the informer lag", func(w *world, a *corev1.Pod, cache client.Reader) {
			del(t, w.ipamd("node-a", cache), a, "ctr-a")
		}},
		{"the controller recycles again an Endpoint of a gone node", func(w *world, a *corev1.Pod, cache client.Reader) {
			if _, err := w.recycleGoneNodes(cache, time.Now().Add(time.Hour), 0); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			single := newPoolObj("p", "10.250.1.0/24")
			single.Spec.IPs = []string{"10.250.1.5"} // b can only get what a gives back
			w := newWorld(t, nil, nsObj("ns"), nodeObj("node-b"), single)
			a := podObj("ns", "a", "node-a", nil)
			b := podObj("ns", "b", "node-a", nil)
			w.create(a)
			w.create(b)
			node := w.ipamd("node-a", nil)
			first := add(t, node, a, "ctr-a", "p")
			cache := w.freeze() // a cache that still shows a holding its address

			// a goes (DEL, or node gone and pod deleted: recycled by the controller), b gets the address
			w.deletePod(a)
			if tc.name == "second DEL within the informer lag" {
				del(t, node, a, "ctr-a")
			} else if _, err := w.recycleGoneNodes(nil, time.Now().Add(time.Hour), 0); err != nil {
				t.Fatal(err)
			}
			w.settle() // the controller's free, sent after its recycling pass, has landed
			if got := add(t, node, b, "ctr-b", "p"); got != first {
				t.Fatalf("b got %s, want the freed %s", got, first)
			}

			tc.replay(w, a, cache)
			w.requireAllocated("p", 1)
			if ep := w.endpoint("ns", "b"); ep == nil || len(ep.Status.Interfaces) != 1 {
				t.Fatalf("b's Endpoint = %+v", ep)
			}
		})
	}
}

// An Endpoint write whose answer was lost (a timeout) though it committed must not be
// rolled back: the pool keeps the address the Endpoint holds, and the runtime's retry
// gets the same address.
func TestLostEndpointWriteIsNotRolledBack(t *testing.T) {
	lose := true
	funcs := &interceptor.Funcs{Create: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.CreateOption) error {
		if _, ok := obj.(*v1.Endpoint); !ok || !lose {
			return c.Create(ctx, obj, opts...)
		}
		lose = false
		if err := c.Create(ctx, obj, opts...); err != nil {
			return err
		}
		return apierrors.NewTimeoutError("the answer was lost", 1)
	}}
	w := newWorld(t, funcs, nsObj("ns"), newPoolObj("p", "10.250.1.0/24"))
	pod := podObj("ns", "a", "node-a", nil)
	w.create(pod)
	svc := w.ipamd("node-a", nil)
	_, err := svc.Allocate(context.Background(), &rpc.AllocateRequest{ContainerID: "ctr-a", IfName: "net1", Network: "under",
		Pod: rpc.Pod{Namespace: "ns", Name: "a", UID: string(pod.UID)}, IPv4Pools: []string{"p"}})
	var rpcErr *rpc.Error
	if !errors.As(err, &rpcErr) || rpcErr.Code != rpc.CodeTryAgainLater {
		t.Fatalf("ADD with a lost answer = %v, want try again later", err)
	}
	w.requireAllocated("p", 1)
	ep := w.endpoint("ns", "a")
	if ep == nil || len(ep.Status.Interfaces) != 1 {
		t.Fatalf("the committed Endpoint is gone: %+v", ep)
	}
	if got := add(t, svc, pod, "ctr-a", "p"); got != ep.Status.Interfaces[0].IPs[0].Address {
		t.Fatalf("the retried ADD got %s, the Endpoint holds %s", got, ep.Status.Interfaces[0].IPs[0].Address)
	}
	w.requireAllocated("p", 1)
}

// Every Endpoint carries a finalizer while it holds addresses, so deleting its namespace
// cannot remove the record (and let the orphan sweeper free the addresses) while the pods
// still run out their grace period. The last release lifts it and the Endpoint goes.
func TestEndpointOutlivesItsDeletionUntilReleased(t *testing.T) {
	w := newWorld(t, nil, nsObj("ns"), newPoolObj("p", "10.250.1.0/24"))
	pod := podObj("ns", "a", "node-a", nil)
	w.create(pod)
	svc := w.ipamd("node-a", nil)
	add(t, svc, pod, "ctr-a", "p")
	ep := w.endpoint("ns", "a")
	if !controllerutil.ContainsFinalizer(ep, v1.EndpointProtection) {
		t.Fatalf("Endpoint finalizers = %v, want %s", ep.Finalizers, v1.EndpointProtection)
	}
	// what the namespace controller does
	if err := w.api.Delete(context.Background(), ep); err != nil {
		t.Fatal(err)
	}
	if ep = w.endpoint("ns", "a"); ep == nil || ep.DeletionTimestamp == nil || len(ep.Status.Interfaces) != 1 {
		t.Fatalf("deleted Endpoint = %+v, want it kept (terminating) with its attachment", ep)
	}
	// recycling leaves it alone while the pod exists
	if got, err := svc.Recycle(context.Background(), time.Now().Add(time.Hour), 0); err != nil || len(got) != 0 {
		t.Fatalf("Recycle with the pod alive = %v, %v", got, err)
	}
	w.requireAllocated("p", 1)
	del(t, svc, pod, "ctr-a")
	if ep := w.endpoint("ns", "a"); ep != nil {
		t.Fatalf("Endpoint still there after the last release: %+v", ep)
	}
	w.requireAllocated("p", 0)
}

// A StatefulSet pod keeps its addresses through a graceful restart: DEL, the pod object
// goes, the controller recreates it (new UID, maybe on another node), ADD. Ordinals the
// set no longer wants are released at DEL; spec.ordinals.start is honoured.
func TestStatefulSetPodKeepsItsAddressAcrossDel(t *testing.T) {
	w := newWorld(t, nil, nsObj("ns"), newPoolObj("p", "10.250.1.0/24"), statefulSet("ns", "web", 2, 3))
	sts := statefulSet("ns", "web", 2, 3)
	web3 := podObj("ns", "web-3", "node-a", sts)
	w.create(web3)
	a, b := w.ipamd("node-a", nil), w.ipamd("node-b", nil)
	first := add(t, a, web3, "ctr-1", "p")

	del(t, a, web3, "ctr-1")
	ep := w.endpoint("ns", "web-3")
	if ep == nil || len(ep.Status.Interfaces) != 1 || ep.Status.Interfaces[0].Detached == nil {
		t.Fatalf("after DEL of a wanted ordinal, Endpoint = %+v, want the attachment kept, detached", ep)
	}
	w.requireAllocated("p", 1)
	del(t, a, web3, "ctr-1") // a second DEL changes nothing
	w.requireAllocated("p", 1)
	// recycling keeps it while the set wants ordinal 3, pod object or not
	w.deletePod(web3)
	if got, err := a.Recycle(context.Background(), time.Now().Add(time.Hour), 0); err != nil || len(got) != 0 {
		t.Fatalf("Recycle of a wanted ordinal = %v, %v", got, err)
	}

	// the successor, on another node
	succ := podObj("ns", "web-3", "node-b", sts)
	succ.UID = types.UID("uid-web-3-2")
	w.create(succ)
	if got := add(t, b, succ, "ctr-2", "p"); got != first {
		t.Fatalf("successor got %s, want its predecessor's %s", got, first)
	}
	ep = w.endpoint("ns", "web-3")
	if itf := ep.Status.Interfaces; len(itf) != 1 || itf[0].Detached != nil || itf[0].PodUID != string(succ.UID) || ep.Status.Node != "node-b" {
		t.Fatalf("after the successor's ADD, Endpoint = %+v", ep)
	}
	w.requireAllocated("p", 1)

	t.Run("scaled below the ordinal: DEL releases", func(t *testing.T) {
		set := statefulSet("ns", "web", 2, 3)
		if err := w.api.Get(context.Background(), client.ObjectKeyFromObject(set), set); err != nil {
			t.Fatal(err)
		}
		set.Spec.Replicas = new(int32) // 0
		if err := w.api.Update(context.Background(), set); err != nil {
			t.Fatal(err)
		}
		del(t, b, succ, "ctr-2")
		if ep := w.endpoint("ns", "web-3"); ep != nil {
			t.Fatalf("Endpoint of an unwanted ordinal = %+v, want gone", ep)
		}
		w.requireAllocated("p", 0)
	})
	t.Run("ordinal below ordinals.start is not wanted", func(t *testing.T) {
		web0 := podObj("ns", "web-0", "node-a", sts)
		w.create(web0)
		add(t, a, web0, "ctr-0", "p")
		del(t, a, web0, "ctr-0")
		w.requireAllocated("p", 0)
	})
}

// A sandbox whose DEL never reached ipamd (ipamd down, the plugin's DEL said ok) must not
// keep its address for the pod's whole life: the pod's next sandbox takes it over.
func TestNewSandboxTakesOverTheOneWhoseDelWasLost(t *testing.T) {
	w := newWorld(t, nil, nsObj("ns"), newPoolObj("p", "10.250.1.0/24"))
	pod := podObj("ns", "a", "node-a", nil)
	w.create(pod)
	svc := w.ipamd("node-a", nil)
	first := add(t, svc, pod, "ctr-1", "p")
	if got := add(t, svc, pod, "ctr-2", "p"); got != first {
		t.Fatalf("the new sandbox got %s, want the lost one's %s", got, first)
	}
	w.requireAllocated("p", 1)
	if ep := w.endpoint("ns", "a"); len(ep.Status.Interfaces) != 1 || ep.Status.Interfaces[0].ContainerID != "ctr-2" {
		t.Fatalf("Endpoint = %+v, want one attachment of ctr-2", ep)
	}
	del(t, svc, pod, "ctr-1") // the lost DEL, arriving late, frees nothing
	w.requireAllocated("p", 1)
	del(t, svc, pod, "ctr-2")
	w.requireAllocated("p", 0)
}

// While a pod object exists its addresses stay held, whatever its phase, its node's health
// or its namespace's state (invariant 8); once it is gone they come back, with the reason.
func TestRecyclingKeepsWhatLivePodsHold(t *testing.T) {
	past := time.Now().Add(-time.Hour)
	for _, tc := range []struct {
		name   string
		pod    func(*corev1.Pod)
		phase  corev1.PodPhase
		gone   bool // pod object deleted
		node   bool // node object exists
		reason string
	}{
		{name: "terminating past its grace period (kubelet down)", node: true, pod: func(p *corev1.Pod) {
			p.Finalizers = []string{"test/hold"} // keeps the object, terminating, after Delete
		}},
		{name: "its Node object deleted, pod still there", node: false},
		{name: "finished", node: true, phase: corev1.PodSucceeded},
		{name: "deleted", node: true, gone: true, reason: "pod-deleted"},
		{name: "deleted, on a gone node", node: false, gone: true, reason: "pod-deleted"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t, nil, nsObj("ns"), newPoolObj("p", "10.250.1.0/24"))
			if tc.node {
				w.create(nodeObj("node-a"))
			}
			pod := podObj("ns", "a", "node-a", nil)
			if tc.pod != nil {
				tc.pod(pod)
			}
			w.create(pod)
			if tc.phase != "" {
				pod.Status.Phase = tc.phase
				if err := w.api.Status().Update(context.Background(), pod); err != nil {
					t.Fatal(err)
				}
			}
			add(t, w.ipamd("node-a", nil), pod, "ctr-a", "p")
			if tc.gone {
				w.deletePod(pod)
			} else if pod.Finalizers != nil {
				if err := w.api.Delete(context.Background(), pod); err != nil {
					t.Fatal(err)
				}
			}
			// judged by this node's ipamd, or by the controller when node-a is gone
			var got map[string]int
			var err error
			if tc.node {
				got, err = w.ipamd("node-a", nil).Recycle(context.Background(), past.Add(2*time.Hour), 0)
			} else {
				got, err = w.recycleGoneNodes(nil, past.Add(2*time.Hour), 0)
			}
			if err != nil {
				t.Fatal(err)
			}
			if tc.reason == "" {
				if len(got) != 0 {
					t.Fatalf("recycled %v from a pod that still exists", got)
				}
				w.requireAllocated("p", 1)
				return
			}
			if got[tc.reason] != 1 {
				t.Fatalf("recycled %v, want one %s", got, tc.reason)
			}
			w.requireAllocated("p", 0)
		})
	}
}

// Records that nothing will take over any more are reclaimed, each with its reason.
func TestRecyclingReclaimsWhatNoOneWillTakeOver(t *testing.T) {
	t.Run("a StatefulSet successor running without its predecessor's addresses", func(t *testing.T) {
		sts := statefulSet("ns", "db", 1, 0)
		w := newWorld(t, nil, nsObj("ns"), newPoolObj("p", "10.250.1.0/24"), sts)
		old := podObj("ns", "db-0", "node-a", sts)
		w.create(old)
		svc := w.ipamd("node-a", nil)
		add(t, svc, old, "ctr-1", "p")
		w.deletePod(old)
		succ := podObj("ns", "db-0", "node-a", sts)
		succ.UID, succ.Status.Phase = "uid-db-0-2", corev1.PodRunning
		w.create(succ)
		got, err := svc.Recycle(context.Background(), time.Now().Add(time.Hour), 0)
		if err != nil || got["statefulset-successor-running-without-them"] != 1 {
			t.Fatalf("Recycle = %v, %v", got, err)
		}
		w.requireAllocated("p", 0)
	})
	t.Run("a sandbox replaced by another of the same pod", func(t *testing.T) {
		w := newWorld(t, nil, nsObj("ns"), newPoolObj("p", "10.250.1.0/24"), newPoolObj("q", "10.250.2.0/24"))
		pod := podObj("ns", "a", "node-a", nil)
		w.create(pod)
		svc := w.ipamd("node-a", nil)
		add(t, svc, pod, "ctr-1", "p")
		// a second live attachment of the same pod on the same interface and network (as
		// an older ipamd, which did not take over, left it): ctr-1's sandbox is gone
		second := netip.MustParseAddr("10.250.2.9")
		w.mark("q", second)
		ep := w.endpoint("ns", "a")
		ep.Status.Interfaces = append(ep.Status.Interfaces, v1.EndpointInterface{ContainerID: "ctr-2", Interface: "net1",
			Network: "under", PodUID: string(pod.UID), IPs: []v1.EndpointIP{{Address: "10.250.2.9/24", Pool: "q"}},
			Created: metav1.NewTime(ep.Status.Interfaces[0].Created.Add(time.Minute))})
		if err := w.api.Update(context.Background(), ep); err != nil {
			t.Fatal(err)
		}
		got, err := svc.Recycle(context.Background(), time.Now().Add(time.Hour), 0)
		if err != nil || got["sandbox-replaced"] != 1 {
			t.Fatalf("Recycle = %v, %v", got, err)
		}
		w.requireAllocated("p", 0)
		w.requireAllocated("q", 1)
	})
}

// A takeover is decided on the API's copy: a node whose cache still shows a predecessor's
// record that another node released (scale down, then up) allocates afresh instead of
// failing forever on a record that is gone.
func TestStaleCacheOfAReleasedPredecessorDoesNotBlockADD(t *testing.T) {
	sts := statefulSet("ns", "db", 1, 0)
	w := newWorld(t, nil, nsObj("ns"), newPoolObj("p", "10.250.1.0/24"), sts)
	old := podObj("ns", "db-0", "node-b", sts)
	w.create(old)
	add(t, w.ipamd("node-b", nil), old, "ctr-1", "p")
	staleA := w.ipamd("node-a", w.freeze())

	sts.Spec.Replicas = new(int32)
	if err := w.api.Update(context.Background(), sts); err != nil {
		t.Fatal(err)
	}
	del(t, w.ipamd("node-b", nil), old, "ctr-1")
	w.deletePod(old)
	w.requireAllocated("p", 0)

	succ := podObj("ns", "db-0", "node-a", sts)
	succ.UID = "uid-db-0-2"
	w.create(succ)
	add(t, staleA, succ, "ctr-2", "p")
	w.requireAllocated("p", 1)
}

// An Endpoint left empty (the delete after its last release failed) is removed by
// recycling; it held nothing.
func TestRecyclingRemovesEmptyEndpoints(t *testing.T) {
	w := newWorld(t, nil, nsObj("ns"))
	w.create(&v1.Endpoint{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "left"}, Status: v1.EndpointStatus{Node: "node-a"}})
	if _, err := w.ipamd("node-a", nil).Recycle(context.Background(), time.Now().Add(time.Hour), time.Minute); err != nil {
		t.Fatal(err)
	}
	if ep := w.endpoint("ns", "left"); ep != nil {
		t.Fatalf("empty Endpoint still there: %+v", ep)
	}
}
