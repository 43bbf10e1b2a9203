package service_test

import (
	"context"
	"net/netip"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/ipamd/service"
	"github.com/underpool/underpool/rpc"
)

// imported writes what `kubectl underpool import` writes for a live pod whose peer kept no
// sandbox ID: the address marked in its pool, and an Endpoint whose attachment names an
// unknown sandbox of the pod and no network.
func (w *world) imported(pod *corev1.Pod, pool, addr string) {
	w.t.Helper()
	w.mark(pool, netip.MustParsePrefix(addr).Addr())
	w.create(&v1.Endpoint{
		ObjectMeta: metav1.ObjectMeta{Namespace: pod.Namespace, Name: pod.Name, Finalizers: []string{v1.EndpointProtection}},
		Status: v1.EndpointStatus{PodUID: string(pod.UID), Node: pod.Spec.NodeName, Interfaces: []v1.EndpointInterface{{
			ContainerID: v1.UnknownSandboxID(string(pod.UID)), Interface: "net1", PodUID: string(pod.UID),
			IPs: []v1.EndpointIP{{Address: addr, Pool: pool}}, Created: metav1.NewTime(time.Now().Add(-time.Hour)),
		}}},
	})
}

// deleting starts a graceful deletion of the pod: a finalizer keeps the object, with its
// deletionTimestamp, as the kubelet's grace period does.
func (w *world) deleting(pod *corev1.Pod) {
	w.t.Helper()
	pod.Finalizers = []string{"test/kubelet"}
	if err := w.api.Update(context.Background(), pod); err != nil {
		w.t.Fatal(err)
	}
	if err := w.api.Delete(context.Background(), pod); err != nil {
		w.t.Fatal(err)
	}
}

// finishDeleting lets a pod that deleting left Terminating go.
func (w *world) finishDeleting(pod *corev1.Pod) {
	w.t.Helper()
	if err := w.api.Get(context.Background(), client.ObjectKeyFromObject(pod), pod); err != nil {
		w.t.Fatal(err)
	}
	pod.Finalizers = nil
	if err := w.api.Update(context.Background(), pod); client.IgnoreNotFound(err) != nil {
		w.t.Fatal(err)
	}
}

func importedWorld(t *testing.T, funcs *interceptor.Funcs) (*world, *corev1.Pod) {
	t.Helper()
	w := newWorld(t, funcs, nsObj("ns"), nodeObj("node-a"), newPoolObj("p", "10.250.1.0/24"))
	a := podObj("ns", "a", "node-a", nil)
	w.create(a)
	w.imported(a, "p", "10.250.1.5/24")
	return w, a
}

// The runtime's DEL names the sandbox's real ID, which the import never knew: once the
// pod incarnation is gone, the DEL of its interface ends the imported attachment and frees
// its address.
func TestTheDELOfAGoneImportedPodFreesWhatItsUnknownSandboxHeld(t *testing.T) {
	for _, c := range []struct {
		name string
		end  func(w *world, pod *corev1.Pod)
	}{
		{"gone", func(w *world, pod *corev1.Pod) { w.deletePod(pod) }},
	} {
		t.Run(c.name, func(t *testing.T) {
			w, a := importedWorld(t, nil)
			svc := w.ipamd("node-a", nil)
			c.end(w, a)

			del(t, svc, a, "sandbox-the-import-never-saw")

			w.requireAllocated("p", 0)
			if ep := w.endpoint("ns", "a"); ep != nil && len(ep.Status.Interfaces) > 0 {
				t.Fatalf("the imported attachment is still recorded: %+v", ep.Status.Interfaces)
			}
			del(t, svc, a, "sandbox-the-import-never-saw") // a repeated DEL finds nothing and fails not
			w.requireAllocated("p", 0)
		})
	}
}

// While the pod object exists (running, being deleted with its containers still stopping,
// or finished), a DEL of a sandbox ipamd never saw may be a runtime repeating the DEL of an
// earlier sandbox while the last one still holds the address: it frees nothing (invariant
// 8); recycling frees it once the pod is gone.
func TestWhileAnImportedPodExistsADELOfAnUnknownSandboxFreesNothing(t *testing.T) {
	for _, c := range []struct {
		name string
		set  func(w *world, pod *corev1.Pod)
	}{
		{"being deleted", func(w *world, pod *corev1.Pod) { w.deleting(pod) }},
		{"finished", func(w *world, pod *corev1.Pod) {
			pod.Status.Phase = corev1.PodSucceeded
			if err := w.api.Status().Update(context.Background(), pod); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			w, a := importedWorld(t, nil)
			svc := w.ipamd("node-a", nil)
			c.set(w, a)
			del(t, svc, a, "sandbox-the-import-never-saw")
			w.requireAllocated("p", 1)
		})
	}
}

// A DEL while the pod runs on may be its sandbox restarting, or a runtime repeating the
// DEL of an earlier sandbox: ipamd cannot tell, so it frees nothing. The new sandbox's ADD
// finds the imported attachment by pod UID and interface (it records no network) and
// keeps the address; from then on the attachment has a real ID and its DEL frees it.
func TestWhileAnImportedPodRunsOnItsDELFreesNothingAndItsNextADDKeepsTheAddress(t *testing.T) {
	w, a := importedWorld(t, nil)
	svc := w.ipamd("node-a", nil)

	del(t, svc, a, "sandbox-before")
	w.requireAllocated("p", 1)

	if got := add(t, svc, a, "sandbox-after", "p"); got != "10.250.1.5/24" {
		t.Fatalf("the restarted sandbox got %s, want its imported 10.250.1.5/24", got)
	}
	w.requireAllocated("p", 1)
	w.requireOneOwner()
	itfs := w.endpoint("ns", "a").Status.Interfaces
	if len(itfs) != 1 || itfs[0].ContainerID != "sandbox-after" || itfs[0].Network != "under" {
		t.Fatalf("attachments after the takeover = %+v, want one, of sandbox-after", itfs)
	}

	w.deleting(a)
	del(t, svc, a, "sandbox-before") // a repeated DEL of the old sandbox: not the holder any more
	w.requireAllocated("p", 1)
	del(t, svc, a, "sandbox-after") // ipamd's own attachment now: its DEL frees it
	w.requireAllocated("p", 0)
}

// Only the incarnation the import recorded, named by the DEL, ends the attachment: a DEL
// without a pod UID, or of another incarnation of the pod's name, frees nothing.
func TestOnlyTheRecordedIncarnationsDELEndsAnImportedAttachment(t *testing.T) {
	w, a := importedWorld(t, nil)
	svc := w.ipamd("node-a", nil)
	w.deleting(a)

	if err := svc.Release(context.Background(), &rpc.ReleaseRequest{ContainerID: "c1", IfName: "net1",
		Pod: rpc.Pod{Namespace: "ns", Name: "a"}}); err != nil {
		t.Fatal(err)
	}
	w.requireAllocated("p", 1)
	later := podObj("ns", "a", "node-a", nil)
	later.UID = types.UID("uid-a-2")
	del(t, svc, later, "c2")
	w.requireAllocated("p", 1)
	if err := svc.Release(context.Background(), &rpc.ReleaseRequest{ContainerID: "c3", IfName: "net2",
		Pod: rpc.Pod{Namespace: "ns", Name: "a", UID: string(a.UID)}}); err != nil {
		t.Fatal(err)
	}
	w.requireAllocated("p", 1) // another interface's DEL
	del(t, svc, a, "c4")
	w.requireAllocated("p", 1) // the recorded incarnation's, but its pod still exists

	w.finishDeleting(a)
	del(t, svc, a, "c4")
	w.requireAllocated("p", 0)
}

// The DEL decides on the pod before it takes the pod's lock; an ADD that takes the
// imported attachment over meanwhile gives it a real ID, and the DEL's guarded write then
// no longer matches it: the address the new sandbox holds stays held.
func TestAnImportedAttachmentTakenOverDuringItsDELIsNotFreed(t *testing.T) {
	var svc *service.Service
	var a *corev1.Pod
	var took *rpc.AllocateResponse
	var tookErr error
	raced := false
	funcs := &interceptor.Funcs{Get: func(ctx context.Context, c client.WithWatch, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
		if err := c.Get(ctx, key, obj, opts...); err != nil {
			return err
		}
		if p, ok := obj.(*corev1.Pod); ok && svc != nil && !raced {
			raced = true // the DEL's read of the pod: the ADD slips in before its write,
			took, tookErr = svc.Allocate(ctx, addReq(a, "sandbox-new", []string{"p"}, nil))
			p.UID = "uid-a-replaced" // and the DEL is made to decide on a read that says the incarnation is gone
		}
		return nil
	}}
	w, pod := importedWorld(t, funcs)
	a, svc = pod, w.ipamd("node-a", nil)

	del(t, svc, a, "sandbox-old")

	if !raced || tookErr != nil || len(took.IPs) != 1 || took.IPs[0].Address != "10.250.1.5/24" {
		t.Fatalf("the ADD inside the DEL: ran %v, got %+v, %v; want the imported 10.250.1.5/24", raced, took, tookErr)
	}
	w.requireAllocated("p", 1)
	w.requireOneOwner()
	if itfs := w.endpoint("ns", "a").Status.Interfaces; len(itfs) != 1 || itfs[0].ContainerID != "sandbox-new" {
		t.Fatalf("attachments = %+v, want the new sandbox's", itfs)
	}
}
