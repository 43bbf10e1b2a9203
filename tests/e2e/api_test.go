package e2e

import (
	"fmt"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/core/allocator"
	"github.com/underpool/underpool/rpc"
)

// Reads and writes of the API and of ipamd's socket that tests share.

// freshPool reads the pool from the API, not from any cache.
func freshPool(t *testing.T, name string) *v1.IPPool {
	t.Helper()
	p := &v1.IPPool{}
	if err := suite.client.Get(ctx(t), client.ObjectKey{Name: name}, p); err != nil {
		t.Fatalf("reading IPPool %s: %v", name, err)
	}
	return p
}

func endpoints(t *testing.T, namespace string) []v1.Endpoint {
	t.Helper()
	var list v1.EndpointList
	if err := suite.client.List(ctx(t), &list, client.InNamespace(namespace)); err != nil {
		t.Fatalf("listing Endpoints: %v", err)
	}
	return list.Items
}

func isNotFound(err error) bool { return apierrors.IsNotFound(err) }

// waitGone waits until the object is gone from the API.
func waitGone(t *testing.T, what string, obj client.Object) {
	t.Helper()
	waitFor(t, what, func() bool {
		return isNotFound(suite.client.Get(ctx(t), client.ObjectKeyFromObject(obj), obj.DeepCopyObject().(client.Object)))
	})
}

func mustDelete(t *testing.T, pod *corev1.Pod, grace int64) {
	t.Helper()
	if err := suite.client.Delete(ctx(t), pod, client.GracePeriodSeconds(grace)); err != nil {
		t.Fatal(err)
	}
}

// eventsAbout lists the events in any namespace about the object of kind named name
// (events about cluster-scoped objects land in "default"), with reason unless it is empty.
func eventsAbout(t *testing.T, kind, name, reason string) []corev1.Event {
	t.Helper()
	var events corev1.EventList
	if err := suite.client.List(ctx(t), &events); err != nil {
		t.Fatal(err)
	}
	var out []corev1.Event
	for _, e := range events.Items {
		if e.InvolvedObject.Kind == kind && e.InvolvedObject.Name == name && (reason == "" || e.Reason == reason) {
			out = append(out, e)
		}
	}
	return out
}

// waitPoolSize waits until the pool exists and offers size addresses.
func waitPoolSize(t *testing.T, name string, size uint64) {
	t.Helper()
	waitFor(t, fmt.Sprintf("pool %s to hold %d addresses", name, size), func() bool {
		p := &v1.IPPool{}
		if err := suite.client.Get(ctx(t), client.ObjectKey{Name: name}, p); err != nil {
			return false
		}
		view, err := allocator.NewPool(p.Name, &p.Spec)
		return err == nil && view.Usable.Count() == size
	})
}

// allocateFor asks this node's ipamd for the pod's interface, as the plugin would.
func allocateFor(t *testing.T, pod *corev1.Pod, ifName string, nadV4 ...string) (*rpc.AllocateResponse, error) {
	t.Helper()
	return suite.ipamd.Client.Allocate(ctx(t), &rpc.AllocateRequest{ContainerID: containerOf(pod),
		IfName: ifName, Network: "net", Pod: rpc.Pod{Namespace: pod.Namespace, Name: pod.Name, UID: string(pod.UID)}, IPv4Pools: nadV4})
}

// containerOf is the container ID allocateFor uses for the pod.
func containerOf(pod *corev1.Pod) string { return "ctr-" + pod.Name + "-" + string(pod.UID)[:8] }

// allocPool allocates for the pod and returns the pool the address came from.
func allocPool(t *testing.T, pod *corev1.Pod, ifName string, nadV4 ...string) string {
	t.Helper()
	resp, err := allocateFor(t, pod, ifName, nadV4...)
	if err != nil {
		t.Fatalf("allocate for %s/%s: %v", pod.Name, ifName, err)
	}
	return resp.IPs[0].Pool
}

// releaseAll releases every attachment recorded in the namespaces, and checks nothing is
// left of them.
func releaseAll(t *testing.T, namespaces ...string) {
	t.Helper()
	for _, ns := range namespaces {
		for _, ep := range endpoints(t, ns) {
			for _, itf := range ep.Status.Interfaces {
				if err := suite.ipamd.Client.Release(ctx(t), &rpc.ReleaseRequest{ContainerID: itf.ContainerID,
					Pod: rpc.Pod{Namespace: ns, Name: ep.Name}}); err != nil {
					t.Fatalf("release %s/%s: %v", ns, ep.Name, err)
				}
			}
		}
		if left := leftovers(t, ns, nil, nil); left != "" {
			t.Fatal(left)
		}
	}
}
