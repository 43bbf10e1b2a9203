package service_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	testingclock "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/core/recycle"
	"github.com/underpool/underpool/ipamd/store"
	"github.com/underpool/underpool/rpc"
)

// gcWorld attaches n pods of network "under" on node-a and returns the world, the node's
// service and the attachments, oldest first.
func gcWorld(t *testing.T, n int) (*world, []rpc.Attachment) {
	t.Helper()
	w := newWorld(t, nil, nsObj("ns"), nodeObj("node-a"), newPoolObj("p", "10.250.1.0/24"))
	svc := w.ipamd("node-a", nil)
	var atts []rpc.Attachment
	for i := 0; i < n; i++ {
		pod := podObj("ns", fmt.Sprintf("pod-%d", i), "node-a", nil)
		w.create(pod)
		add(t, svc, pod, "ctr-"+pod.Name, "p")
		atts = append(atts, rpc.Attachment{ContainerID: "ctr-" + pod.Name, IfName: "net1"})
	}
	return w, atts
}

// age makes every attachment of the pod look created d ago.
func (w *world) age(name string, d time.Duration) {
	w.t.Helper()
	ep := w.endpoint("ns", name)
	for i := range ep.Status.Interfaces {
		ep.Status.Interfaces[i].Created = metav1.NewTime(time.Now().Add(-d))
	}
	if err := w.api.Status().Update(context.Background(), ep); err != nil {
		if err := w.api.Update(context.Background(), ep); err != nil {
			w.t.Fatal(err)
		}
	}
}

func held(w *world) int {
	w.t.Helper()
	var eps v1.EndpointList
	if err := w.api.List(context.Background(), &eps); err != nil {
		w.t.Fatal(err)
	}
	n := 0
	for _, ep := range eps.Items {
		n += len(ep.Status.Interfaces)
	}
	return n
}

// CNI GC never releases an attachment younger than the minimum age: its ADD may still be
// in flight, or the runtime's list was taken before it. Once old enough it goes.
func TestGCSparesYoungAttachments(t *testing.T) {
	w, atts := gcWorld(t, 2)
	svc := w.ipamd("node-a", nil)
	svc.GCMinAge = time.Minute
	resp, err := svc.GC(context.Background(), &rpc.GCRequest{Network: "under", Valid: atts[:1]}, false)
	if err != nil || len(resp.Released) != 0 {
		t.Fatalf("GC of a young attachment = %+v, %v; want nothing released", resp, err)
	}
	if held(w) != 2 {
		t.Fatalf("%d attachments held, want 2", held(w))
	}
	w.age("pod-1", 2*time.Minute)
	resp, err = svc.GC(context.Background(), &rpc.GCRequest{Network: "under", Valid: atts[:1]}, false)
	if err != nil || len(resp.Released) != 1 || resp.Released[0] != atts[1] {
		t.Fatalf("GC of an old attachment = %+v, %v; want %v released", resp, err, atts[1])
	}
	w.requireAllocated("p", 1)
	w.requireOneOwner()
}

// A GC that would release more than the allowed share of a network's attachments on the
// node at once (a runtime that lost its state, a forged request) is refused whole, with
// an error naming the field and the way out; force lifts the limit. One attachment is
// always allowed.
func TestGCRefusesTooLargeAShare(t *testing.T) {
	for _, tc := range []struct {
		name    string
		pods    int
		valid   int
		force   bool
		release int // -1: refused
	}{
		{"all of four, none valid", 4, 0, false, -1},
		{"three of four", 4, 1, false, -1},
		{"half of four", 4, 2, false, 2},
		{"all of four, forced", 4, 0, true, 4},
		{"the only one", 1, 0, false, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w, atts := gcWorld(t, tc.pods)
			svc := w.ipamd("node-a", nil)
			svc.GCMaxShare = 0.5
			resp, err := svc.GC(context.Background(), &rpc.GCRequest{Network: "under", Valid: atts[:tc.valid]}, tc.force)
			if tc.release < 0 {
				requireCode(t, err, rpc.CodeBadRequest, "valid")
				if !strings.Contains(err.Error(), "force") || !strings.Contains(err.Error(), "--gc-max-share") {
					t.Fatalf("refusal %q does not say which limit and how to force it", err)
				}
				if held(w) != tc.pods {
					t.Fatalf("a refused GC released something: %d of %d held", held(w), tc.pods)
				}
				return
			}
			if err != nil || len(resp.Released) != tc.release {
				t.Fatalf("GC = %+v, %v; want %d released", resp, err, tc.release)
			}
			if held(w) != tc.pods-tc.release {
				t.Fatalf("%d held, want %d", held(w), tc.pods-tc.release)
			}
			w.requireOneOwner()
		})
	}
}

// An Endpoint naming no node (written by an old version, or by hand) has no ipamd: the
// controller judges it, on the pod, and the node's own round neither stops on it nor
// judges it.
func TestRecycleJudgesEndpointsWithoutNode(t *testing.T) {
	w := newWorld(t, nil, nsObj("ns"), nodeObj("node-a"), newPoolObj("p", "10.250.1.0/24"))
	svc := w.ipamd("node-a", nil)
	a, b := podObj("ns", "a", "node-a", nil), podObj("ns", "b", "node-a", nil)
	for _, pod := range []*corev1.Pod{a, b} {
		w.create(pod)
		add(t, svc, pod, "ctr-"+pod.Name, "p")
	}
	ep := w.endpoint("ns", "a")
	ep.Status.Node = ""
	if err := w.api.Update(context.Background(), ep); err != nil {
		t.Fatal(err)
	}
	w.deletePod(a)
	w.deletePod(b)
	later := time.Now().Add(time.Hour)
	released, err := svc.Recycle(context.Background(), later, time.Minute)
	if err != nil {
		t.Fatalf("recycling stopped on an Endpoint without node: %v", err)
	}
	if released[recycle.ReasonPodDeleted] != 1 {
		t.Fatalf("node-a's ipamd released %v, want its own gone pod's attachment only", released)
	}
	w.requireAllocated("p", 1)
	if released, err = w.recycleGoneNodes(nil, later, time.Minute); err != nil || released[recycle.ReasonPodDeleted] != 1 {
		t.Fatalf("the controller released %v (%v), want the node-less Endpoint's attachment", released, err)
	}
	w.requireAllocated("p", 0)
}

// A node's ipamd never judges another node's Endpoints, even of a pod that is gone: that
// node's ipamd does (or the controller, once the node is gone), so one node's work does
// not grow with the cluster.
func TestRecycleLeavesOtherNodesEndpoints(t *testing.T) {
	w := newWorld(t, nil, nsObj("ns"), nodeObj("node-a"), nodeObj("node-b"), newPoolObj("p", "10.250.1.0/24"))
	pod := podObj("ns", "a", "node-a", nil)
	w.create(pod)
	add(t, w.ipamd("node-a", nil), pod, "ctr-a", "p")
	w.deletePod(pod)
	later := time.Now().Add(time.Hour)
	if got, err := w.ipamd("node-b", nil).Recycle(context.Background(), later, 0); err != nil || len(got) != 0 {
		t.Fatalf("node-b's ipamd recycled %v (%v) of node-a's Endpoint", got, err)
	}
	if got, err := w.recycleGoneNodes(nil, later, 0); err != nil || len(got) != 0 {
		t.Fatalf("the controller recycled %v (%v) of a node that exists", got, err)
	}
	w.requireAllocated("p", 1)
	if got, err := w.ipamd("node-a", nil).Recycle(context.Background(), later, 0); err != nil || got[recycle.ReasonPodDeleted] != 1 {
		t.Fatalf("node-a's ipamd recycled %v (%v), want its gone pod", got, err)
	}
	w.requireAllocated("p", 0)
}

// gcKey marks the context of the GC whose read of the node's Endpoints stalls.
type gcKey struct{}

// stallEndpointList holds the first list of Endpoints made under a gcKey context until
// released is closed, after telling arrived.
func stallEndpointList(arrived chan<- struct{}, released <-chan struct{}) *interceptor.Funcs {
	stalled := false
	return &interceptor.Funcs{List: func(ctx context.Context, c client.WithWatch, list client.ObjectList, opts ...client.ListOption) error {
		if _, eps := list.(*v1.EndpointList); eps && ctx.Value(gcKey{}) != nil && !stalled {
			stalled = true
			close(arrived)
			<-released
		}
		return c.List(ctx, list, opts...)
	}}
}

// Found by the simulation: CNI GC judged an attachment's age on the clock read after it
// had listed the node's Endpoints, so a GC that stalled there (ipamd descheduled, for
// longer than --gc-min-age) released an attachment made after the runtime's list was
// taken: a live pod's, whose address was then handed out again. Age is judged at the
// request's arrival: what was made after it is never stale.
func TestGCNeverReleasesAnAttachmentMadeAfterItArrived(t *testing.T) {
	arrived, released := make(chan struct{}), make(chan struct{})
	w := newWorld(t, stallEndpointList(arrived, released), nsObj("ns"), nodeObj("node-a"), newPoolObj("p", "10.250.1.0/24"))
	clk := testingclock.NewFakeClock(time.Now())
	svc := onClock(w.ipamd("node-a", nil), clk, store.Window(time.Minute))
	svc.GCMinAge = time.Minute
	gcDone := make(chan error, 1)
	go func() {
		_, err := svc.GC(context.WithValue(context.Background(), gcKey{}, true), &rpc.GCRequest{Network: "under"}, false)
		gcDone <- err
	}()
	<-arrived
	// the runtime's list is taken; then a pod starts, and the GC waits past the min age
	pod := podObj("ns", "b", "node-a", nil)
	w.create(pod)
	add(t, svc, pod, "ctr-b", "p")
	clk.Step(2 * time.Minute)
	close(released)
	if err := <-gcDone; err != nil {
		t.Fatal(err)
	}
	if held(w) != 1 {
		t.Fatalf("the GC released the attachment made after it arrived: %d held", held(w))
	}
	w.requireAllocated("p", 1)
}
