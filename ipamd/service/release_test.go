package service_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.uber.org/zap"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/controller/orphans"
	"github.com/underpool/underpool/ipamd/service"
	"github.com/underpool/underpool/rpc"
)

// failPoolWrites makes every allocation state write fail while *on is true: the crash
// (or API outage) between the Endpoint write and the pool write of a release.
func failPoolWrites(on *bool) *interceptor.Funcs {
	return &interceptor.Funcs{Update: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.UpdateOption) error {
		if _, ok := obj.(*v1.PoolAllocation); ok && *on {
			return errors.New("apiserver unavailable")
		}
		return c.Update(ctx, obj, opts...)
	}}
}

// A release makes the Endpoint forget an address before its pool frees it (the free is sent
// after the release answered). When the pool write fails after the Endpoint write, the address is an orphan (marked, unheld): never
// free while an Endpoint still holds it, never handed to a second pod; the sweeper frees
// it later and only then does it serve again.
func TestReleaseForgetsBeforeFreeing(t *testing.T) {
	for _, tc := range []struct {
		name    string
		release func(w *world, svc *service.Service, pod *corev1.Pod) error
	}{
		{"DEL", func(w *world, svc *service.Service, pod *corev1.Pod) error {
			return svc.Release(context.Background(), &rpc.ReleaseRequest{ContainerID: "ctr-a", IfName: "net1",
				Pod: rpc.Pod{Namespace: "ns", Name: "a"}})
		}},
		{"GC of an attachment the runtime no longer has", func(w *world, svc *service.Service, pod *corev1.Pod) error {
			_, err := svc.GC(context.Background(), &rpc.GCRequest{Network: "under"}, false)
			return err
		}},
		{"recycling after the pod is gone", func(w *world, svc *service.Service, pod *corev1.Pod) error {
			w.deletePod(pod)
			_, err := svc.Recycle(context.Background(), time.Now().Add(time.Hour), 0)
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			failing := false
			single := newPoolObj("p", "10.250.1.0/24")
			single.Spec.IPs = []string{"10.250.1.5"} // b can only get what a gives back
			w := newWorld(t, failPoolWrites(&failing), nsObj("ns"), nodeObj("node-a"), single)
			a, b := podObj("ns", "a", "node-a", nil), podObj("ns", "b", "node-a", nil)
			w.create(a)
			w.create(b)
			svc := w.ipamd("node-a", nil)
			add(t, svc, a, "ctr-a", "p")

			failing = true
			// the release answers once the record is gone; its free, sent after the
			// answer, fails
			if err := tc.release(w, svc, a); err != nil {
				t.Fatalf("the release failed though it removed the record: %v", err)
			}
			w.settle()
			failing = false
			if ep := w.endpoint("ns", "a"); ep != nil && len(ep.Status.Interfaces) != 0 {
				t.Fatalf("the Endpoint still holds the attachment: %+v", ep)
			}
			w.requireAllocated("p", 1) // an orphan: marked, held by nobody
			w.requireOneOwner()

			// the orphan is not handed out again while it is marked
			_, err := svc.Allocate(context.Background(), addReq(b, "ctr-b", []string{"p"}, nil))
			requireCode(t, err, rpc.CodeNoAddress, "ipv4Pools")

			// the sweeper frees it once seen unheld past its grace, then marked, confirmed
			// and freed a commit window apart
			sweeper := &orphans.Sweeper{Writer: w.api,
				Cache: w.api, API: w.api, Log: zap.NewNop()}
			now := time.Now()
			for i := range 6 {
				if _, err := sweeper.Sweep(context.Background(), now.Add(time.Duration(i)*time.Hour), time.Minute); err != nil {
					t.Fatal(err)
				}
			}
			w.requireAllocated("p", 0)
			if got := add(t, svc, b, "ctr-b", "p"); got != "10.250.1.5/24" {
				t.Fatalf("b got %s after the sweep", got)
			}
			w.requireOneOwner()
		})
	}
}
