package service_test

import (
	"context"
	"slices"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	v1 "github.com/underpool/underpool/api/v1"
)

func legacyEndpoint(name, node string, addrs ...string) *v1.Endpoint {
	ep := &v1.Endpoint{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name}, Status: v1.EndpointStatus{Node: node}}
	itf := v1.EndpointInterface{ContainerID: "c-" + name, Interface: "net1"}
	for _, a := range addrs {
		itf.IPs = append(itf.IPs, v1.EndpointIP{Address: a, Pool: "p"})
	}
	ep.Status.Interfaces = []v1.EndpointInterface{itf}
	return ep
}

// Endpoints written before the protection finalizer existed get it at startup, in a
// guarded update: one changed meanwhile (another attachment recorded) is re-read, not
// overwritten. Endpoints that hold nothing, or are another node's, are left alone.
func TestReconcileProtectsEndpointsWrittenBeforeTheFinalizer(t *testing.T) {
	ctx := context.Background()
	raced := false
	funcs := &interceptor.Funcs{Update: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.UpdateOption) error {
		if ep, ok := obj.(*v1.Endpoint); ok && ep.Name == "old" && !raced {
			raced = true // a DEL-then-ADD on another path writes first: this update is stale
			fresh := &v1.Endpoint{}
			if err := c.Get(ctx, client.ObjectKeyFromObject(ep), fresh); err != nil {
				return err
			}
			fresh.Status.Interfaces = append(fresh.Status.Interfaces, v1.EndpointInterface{ContainerID: "c-new", Interface: "net2",
				IPs: []v1.EndpointIP{{Address: "10.0.0.9/24", Pool: "p"}}})
			if err := c.Update(ctx, fresh); err != nil {
				return err
			}
		}
		return c.Update(ctx, obj, opts...)
	}}
	pool := newPoolObj("p", "10.0.0.0/24")
	empty := legacyEndpoint("empty", "n1")
	w := newWorld(t, funcs, pool, stateObj(pool, "5-6,9"), // as the ipamds that recorded them left it
		legacyEndpoint("old", "n1", "10.0.0.5/24"), empty, legacyEndpoint("elsewhere", "n2", "10.0.0.6/24"))
	s := w.ipamd("n1", nil)
	if err := s.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if ready, reason := s.Ready(); !ready {
		t.Fatalf("not ready after reconcile: %s", reason)
	}
	old := w.endpoint("ns", "old")
	if !raced || !controllerutil.ContainsFinalizer(old, v1.EndpointProtection) {
		t.Fatalf("the node's legacy Endpoint has finalizers %v (update raced: %v), want %s", old.Finalizers, raced, v1.EndpointProtection)
	}
	if !slices.ContainsFunc(old.Status.Interfaces, func(i v1.EndpointInterface) bool { return i.ContainerID == "c-new" }) {
		t.Fatalf("the attachment recorded meanwhile was overwritten: %+v", old.Status.Interfaces)
	}
	for _, name := range []string{"empty", "elsewhere"} {
		if ep := w.endpoint("ns", name); len(ep.Finalizers) != 0 {
			t.Errorf("Endpoint %s got finalizers %v: it holds nothing on this node", name, ep.Finalizers)
		}
	}
	w.requireOneOwner()
}
