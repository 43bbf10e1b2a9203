package service_test

import (
	"context"
	"errors"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/ipamd/service"
	"github.com/underpool/underpool/rpc"
)

// Each kind of failed allocation is counted under its own kind; the e2e test covers
// exhausted, no_eligible_pool and bad_request against the real API, these the kinds only
// a misbehaving API produces.
func TestAllocationFailureKinds(t *testing.T) {
	conflict := apierrors.NewConflict(schema.GroupResource{Group: "underpool.io", Resource: "ippools"}, "p", errors.New("modified"))
	for _, c := range []struct {
		name  string
		write error // every allocation state write fails with it
		state string
		kind  string
	}{
		{"conflicts until the retries run out", conflict, "", service.FailureConflicts},
		{"the API fails", apierrors.NewServiceUnavailable("etcd down"), "", service.FailureAPIError},
		{"the pool's state is corrupt", nil, "not-a-run-set", service.FailurePoolUnusable},
	} {
		t.Run(c.name, func(t *testing.T) {
			funcs := &interceptor.Funcs{
				Create: func(ctx context.Context, cl client.WithWatch, obj client.Object, opts ...client.CreateOption) error {
					if _, ok := obj.(*v1.PoolAllocation); ok && c.write != nil {
						return c.write
					}
					return cl.Create(ctx, obj, opts...)
				},
				Update: func(ctx context.Context, cl client.WithWatch, obj client.Object, opts ...client.UpdateOption) error {
					if _, ok := obj.(*v1.PoolAllocation); ok && c.write != nil {
						return c.write
					}
					return cl.Update(ctx, obj, opts...)
				}}
			pool := newPoolObj("p", "10.1.0.0/24")
			objs := []client.Object{pool}
			if c.state != "" {
				objs = append(objs, stateObj(pool, c.state))
			}
			pod := podObj("ns", "a", "n1", nil)
			w := newWorld(t, funcs, append(objs, nsObj("ns"), nodeObj("n1"), pod)...)
			svc := w.ipamd("n1", nil)
			reg := prometheus.NewPedanticRegistry()
			svc.Metrics = service.NewMetrics(reg)
			_, err := svc.Allocate(context.Background(), &rpc.AllocateRequest{ContainerID: "c1", IfName: "net1", Network: "under",
				Pod: rpc.Pod{Namespace: "ns", Name: "a", UID: string(pod.UID)}, IPv4Pools: []string{"p"}})
			var e *rpc.Error
			if !errors.As(err, &e) || e.Code != rpc.CodeNoAddress {
				t.Fatalf("Allocate: %v, want an rpc.Error with CodeNoAddress", err)
			}
			for _, kind := range []string{service.FailureExhausted, service.FailureNoEligiblePool, service.FailureConflicts,
				service.FailurePoolUnusable, service.FailureAPIError, service.FailureBadRequest} {
				want := 0.0
				if kind == c.kind {
					want = 1
				}
				if got := testutil.ToFloat64(svc.Metrics.Failures.WithLabelValues(kind)); got != want {
					t.Errorf("failures{kind=%s} = %v, want %v", kind, got, want)
				}
			}
			if got := testutil.ToFloat64(svc.Metrics.InFlight.WithLabelValues("allocate")); got != 0 {
				t.Errorf("in flight after the request = %v", got)
			}
		})
	}
}

// A request being served counts in underpool_ipamd_requests_in_flight for its operation
// while it lasts, and no longer once it is answered: the gauge is forced above 0 by
// holding the request's write open (an ADD's pool commit, a DEL's Endpoint write: a DEL
// answers before its free), not read at rest only.
func TestARequestHeldOpenCountsInFlight(t *testing.T) {
	for _, op := range []string{"allocate", "release"} {
		t.Run(op, func(t *testing.T) {
			arrived, released := make(chan struct{}), make(chan struct{})
			stall := stallOnce(arrived, released)
			if op == "release" {
				stall = stallFirst(arrived, released, func(obj client.Object) bool { _, ep := obj.(*v1.Endpoint); return ep })
			}
			w := newWorld(t, stall, nsObj("ns"), nodeObj("n1"), newPoolObj("p", "10.250.1.0/24"))
			a, b := podObj("ns", "a", "n1", nil), podObj("ns", "b", "n1", nil)
			w.create(a)
			w.create(b)
			svc := w.ipamd("n1", nil)
			svc.Metrics = service.NewMetrics(prometheus.NewPedanticRegistry())
			add(t, svc, a, "ctr-a", "p") // makes the pool's state: the next write is an update
			held := context.WithValue(context.Background(), stallKey{}, true)
			done := make(chan error, 1)
			go func() {
				if op == "allocate" {
					_, err := svc.Allocate(held, &rpc.AllocateRequest{ContainerID: "ctr-b", IfName: "net1", Network: "under",
						Pod: rpc.Pod{Namespace: "ns", Name: "b", UID: string(b.UID)}, IPv4Pools: []string{"p"}})
					done <- err
					return
				}
				done <- svc.Release(held, &rpc.ReleaseRequest{ContainerID: "ctr-a", IfName: "net1",
					Pod: rpc.Pod{Namespace: "ns", Name: "a", UID: string(a.UID)}})
			}()
			<-arrived
			if got := testutil.ToFloat64(svc.Metrics.InFlight.WithLabelValues(op)); got != 1 {
				t.Errorf("in flight while the %s is held open = %v, want 1", op, got)
			}
			close(released)
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			if got := testutil.ToFloat64(svc.Metrics.InFlight.WithLabelValues(op)); got != 0 {
				t.Errorf("in flight after the %s = %v, want 0", op, got)
			}
		})
	}
}
