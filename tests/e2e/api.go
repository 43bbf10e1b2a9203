package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/core/allocator"
	"github.com/underpool/underpool/rpc"
)

// Reads and writes of the API and of ipamd's socket that tests share.

// FreshPool reads the pool from the API, not from any cache.
func FreshPool(t *testing.T, name string) *v1.IPPool {
	t.Helper()
	p := &v1.IPPool{}
	if err := Suite.Client.Get(Ctx(t), client.ObjectKey{Name: name}, p); err != nil {
		t.Fatalf("reading IPPool %s: %v", name, err)
	}
	return p
}

// FreshState reads a pool's allocation state (its PoolAllocation) from the API: empty
// when the pool has none yet, or when the one there is an earlier pool's of that name.
func FreshState(t *testing.T, name string) v1.AllocationState {
	t.Helper()
	st, _ := freshState(t, name)
	return st
}

// freshState reads the pool and its allocation state.
func freshState(t *testing.T, name string) (v1.AllocationState, *v1.PoolAllocation) {
	t.Helper()
	pool := FreshPool(t, name)
	a := &v1.PoolAllocation{}
	if err := Suite.Client.Get(Ctx(t), client.ObjectKey{Name: name}, a); err != nil {
		if IsNotFound(err) {
			return v1.AllocationState{}, nil
		}
		t.Fatalf("reading PoolAllocation %s: %v", name, err)
	}
	return v1.StateOf(pool, a), a
}

// Endpoints lists the Endpoints of a namespace from the API.
func Endpoints(t *testing.T, namespace string) []v1.Endpoint {
	t.Helper()
	var list v1.EndpointList
	if err := Suite.Client.List(Ctx(t), &list, client.InNamespace(namespace)); err != nil {
		t.Fatalf("listing Endpoints: %v", err)
	}
	return list.Items
}

// IsNotFound reports whether an API error says the object is not there.
func IsNotFound(err error) bool { return apierrors.IsNotFound(err) }

// WaitGone waits until the object is gone from the API.
func WaitGone(t *testing.T, what string, obj client.Object) {
	t.Helper()
	WaitFor(t, what, func() bool {
		return IsNotFound(Suite.Client.Get(Ctx(t), client.ObjectKeyFromObject(obj), obj.DeepCopyObject().(client.Object)))
	})
}

// MustDelete deletes the pod with this grace period (seconds), failing the test if it cannot.
func MustDelete(t *testing.T, pod *corev1.Pod, grace int64) {
	t.Helper()
	if err := Suite.Client.Delete(Ctx(t), pod, client.GracePeriodSeconds(grace)); err != nil {
		t.Fatal(err)
	}
}

// EventsAbout lists the events in any namespace about the object of kind named name
// (events about cluster-scoped objects land in "default"), with reason unless it is empty.
func EventsAbout(t *testing.T, kind, name, reason string) []corev1.Event {
	t.Helper()
	var events corev1.EventList
	if err := Suite.Client.List(Ctx(t), &events); err != nil {
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

// WaitPoolSize waits until the pool exists and offers size addresses.
func WaitPoolSize(t *testing.T, name string, size uint64) {
	t.Helper()
	WaitFor(t, fmt.Sprintf("pool %s to hold %d addresses", name, size), func() bool {
		p := &v1.IPPool{}
		if err := Suite.Client.Get(Ctx(t), client.ObjectKey{Name: name}, p); err != nil {
			return false
		}
		view, err := allocator.NewPool(p.Name, &p.Spec)
		return err == nil && view.Usable.Count() == size
	})
}

// AllocateFor asks this node's ipamd for the pod's interface, as the plugin would.
func AllocateFor(t *testing.T, pod *corev1.Pod, ifName string, nadV4 ...string) (*rpc.AllocateResponse, error) {
	t.Helper()
	return Suite.Ipamd.Client.Allocate(Ctx(t), &rpc.AllocateRequest{ContainerID: ContainerOf(pod),
		IfName: ifName, Network: "net", Pod: rpc.Pod{Namespace: pod.Namespace, Name: pod.Name, UID: string(pod.UID)}, IPv4Pools: nadV4})
}

// ContainerOf is the container ID allocateFor uses for the pod.
func ContainerOf(pod *corev1.Pod) string { return "ctr-" + pod.Name + "-" + string(pod.UID)[:8] }

// AllocPool allocates for the pod and returns the pool the address came from.
func AllocPool(t *testing.T, pod *corev1.Pod, ifName string, nadV4 ...string) string {
	t.Helper()
	resp, err := AllocateFor(t, pod, ifName, nadV4...)
	if err != nil {
		t.Fatalf("allocate for %s/%s: %v", pod.Name, ifName, err)
	}
	return resp.IPs[0].Pool
}

// ReleaseAll releases every attachment recorded in the namespaces, and checks nothing is
// left of them.
func ReleaseAll(t *testing.T, namespaces ...string) {
	t.Helper()
	for _, ns := range namespaces {
		for _, ep := range Endpoints(t, ns) {
			for _, itf := range ep.Status.Interfaces {
				if err := Suite.Ipamd.Client.Release(Ctx(t), &rpc.ReleaseRequest{ContainerID: itf.ContainerID,
					Pod: rpc.Pod{Namespace: ns, Name: ep.Name}}); err != nil {
					t.Fatalf("release %s/%s: %v", ns, ep.Name, err)
				}
			}
		}
		if left := SettledLeftovers(t, ns, nil, nil); left != "" {
			t.Fatal(left)
		}
	}
}

// MarkAllocated sets an address in the pool's allocation state without any Endpoint:
// what a crash between the pool commit and the Endpoint write leaves behind.
func MarkAllocated(t *testing.T, pool string, offset int) {
	t.Helper()
	EditState(t, pool, func(st *v1.AllocationState) {
		if st.Allocated != "" {
			st.Allocated += ","
		}
		st.Allocated += fmt.Sprint(offset)
		st.AllocatedIPCount++
	})
}

// EditState changes a pool's allocation state as an operator (or a crash) would, making
// the PoolAllocation when the pool has none yet.
func EditState(t *testing.T, pool string, edit func(*v1.AllocationState)) {
	t.Helper()
	for {
		p := FreshPool(t, pool)
		_, a := freshState(t, pool)
		var err error
		if a == nil || a.PoolUID != p.UID {
			a = v1.AllocationOf(p)
			edit(&a.State)
			err = Suite.Client.Create(context.Background(), a)
		} else {
			edit(&a.State)
			err = Suite.Client.Update(context.Background(), a)
		}
		if err == nil {
			return
		}
		if !strings.Contains(err.Error(), "modified") && !strings.Contains(err.Error(), "already exists") {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
