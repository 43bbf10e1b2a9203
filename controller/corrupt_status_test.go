package controller

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	v1 "github.com/underpool/underpool/api/v1"
)

// pastTheSubnet are states of a /24 pool that parse but name offsets it does not have:
// a typo in a hand repair. Every controller path must take them for corrupt, cheaply.
var pastTheSubnet = []string{"1-400000", "0-4294967295"}

// A Subnet's allocated column counts a pool whose state runs past its subnet as full
// (ipamd hands nothing out of it), not as holding 400,000 or 2^32 addresses of a /24.
func TestSubnetStatusCountsACorruptPoolAsFull(t *testing.T) {
	for _, corrupt := range pastTheSubnet {
		t.Run(corrupt, func(t *testing.T) {
			sub := &v1.Subnet{ObjectMeta: metav1.ObjectMeta{Name: "s"}, Spec: v1.SubnetSpec{Subnet: "10.9.0.0/24"}}
			good := poolOf("good", "10.9.0.0/24", "10.9.0.10-10.9.0.19", "10-11")
			good.state.AllocatedIPCount = 2
			bad := poolOf("bad", "10.9.0.0/24", "10.9.0.100-10.9.0.103", corrupt)
			bad.state.AllocatedIPCount = 400000 // as ipamd counts such a state
			objs := append(append([]client.Object{sub}, good.objects()...), bad.objects()...)
			c := fake.NewClientBuilder().WithScheme(testScheme(t)).WithObjects(objs...).WithStatusSubresource(&v1.Subnet{}).Build()
			if _, err := (&subnetStatus{c: c}).Reconcile(context.Background(), reconcile.Request{NamespacedName: client.ObjectKey{Name: "s"}}); err != nil {
				t.Fatal(err)
			}
			if err := c.Get(context.Background(), client.ObjectKey{Name: "s"}, sub); err != nil {
				t.Fatal(err)
			}
			if sub.Status.AllocatedIPCount != 2+4 || sub.Status.TotalIPCount != 254 {
				t.Fatalf("Subnet status %+v, want 6 allocated (2, and the corrupt pool's 4) of 254", sub.Status)
			}
		})
	}
}

// The capacity metrics say the same of such a pool: all its addresses, not 400,000.
func TestCapacityMetricCountsACorruptPoolAsFull(t *testing.T) {
	for _, corrupt := range pastTheSubnet {
		bad := poolOf("bad", "10.9.0.0/24", "10.9.0.100-10.9.0.103", corrupt)
		bad.state.AllocatedIPCount = 400000
		c := fake.NewClientBuilder().WithScheme(testScheme(t)).WithObjects(bad.objects()...).Build()
		reg := prometheus.NewPedanticRegistry()
		reg.MustRegister(&capacity{c: c})
		want := "# HELP underpool_ippool_allocated_addresses " + poolAllocatedHelp + "\n# TYPE underpool_ippool_allocated_addresses gauge\n" +
			"underpool_ippool_allocated_addresses{pool=\"bad\"} 4\n"
		if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "underpool_ippool_allocated_addresses"); err != nil {
			t.Errorf("state %q: %v", corrupt, err)
		}
	}
}

// A deleted pool leaves once its state.allocated is empty (a hand repair that left the
// count behind included), never while the state runs past its subnet: such a state
// proves nothing about the addresses its pods hold.
func TestFinalizerStaysOnADeletedPoolWhoseStateIsPastItsSubnet(t *testing.T) {
	ctx := context.Background()
	for _, corrupt := range pastTheSubnet {
		t.Run(corrupt, func(t *testing.T) {
			h := poolOf("p", "10.9.0.0/24", "", corrupt)
			h.pool.Finalizers = []string{PoolProtection}
			h.pool.DeletionTimestamp = &metav1.Time{Time: time.Now()}
			h.state.AllocatedIPCount = 0 // a count that lags: state.allocated is what counts
			c := fake.NewClientBuilder().WithScheme(testScheme(t)).WithObjects(h.objects()...).Build()
			r := &poolFinalizer{c: c}
			key := reconcile.Request{NamespacedName: client.ObjectKey{Name: "p"}}
			if _, err := r.Reconcile(ctx, key); err != nil {
				t.Fatal(err)
			}
			got := &v1.IPPool{}
			if err := c.Get(ctx, client.ObjectKey{Name: "p"}, got); err != nil || !controllerutil.ContainsFinalizer(got, PoolProtection) {
				t.Fatalf("the finalizer of a pool with a corrupt state was lifted (%v)", err)
			}
			alloc := &v1.PoolAllocation{}
			if err := c.Get(ctx, client.ObjectKey{Name: "p"}, alloc); err != nil || alloc.Closed {
				t.Fatalf("a state holding addresses was closed (%v): %+v", err, alloc)
			}
			alloc.State.Allocated, alloc.State.AllocatedIPCount = "", 400000 // repaired by hand, the count left behind
			if err := c.Update(ctx, alloc); err != nil {
				t.Fatal(err)
			}
			if _, err := r.Reconcile(ctx, key); err != nil {
				t.Fatal(err)
			}
			if err := c.Get(ctx, client.ObjectKey{Name: "p"}, got); !apierrors.IsNotFound(err) {
				t.Fatalf("the repaired, empty pool is still there (%v): %+v", err, got.ObjectMeta)
			}
			if err := c.Get(ctx, client.ObjectKey{Name: "p"}, alloc); err != nil || !alloc.Closed {
				t.Fatalf("the pool went without its state closed first (%v): %+v", err, alloc)
			}
		})
	}
}
