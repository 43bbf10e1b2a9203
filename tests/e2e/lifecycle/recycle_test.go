package lifecycle

import (
	"os"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/rpc"
	"github.com/underpool/underpool/tests/e2e"
	"github.com/underpool/underpool/tests/harness"
)

// Recycling, through the socket API: addresses of pods that were deleted or replaced (new
// UID, not a StatefulSet) come back; a pod's whose object still exists never do, whatever
// its phase (finished), its state (terminating past its grace on a node without kubelet)
// or its node (gone), until the object goes; a wanted StatefulSet ordinal's stays until
// the set is scaled below it; an orphan in a pool is freed (by the elected controller,
// the only orphan sweeper). Lifecycle tests prove the same through real controllers.
func TestRecycling(t *testing.T) {
	const node = "gc-node"
	if err := e2e.Suite.Client.Create(e2e.Ctx(t), &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: node}}); err != nil {
		t.Fatal(err)
	}
	o := harness.DefaultIpamdOptions(e2e.Suite.Bin, e2e.Suite.CP.KubeconfigPath, node, e2e.Suite.Dir)
	o.ExtraArgs = []string{"--gc-interval=300ms", "--gc-grace=1s", "--commit-window=" + e2e.CommitWindow}
	gc, err := harness.StartIpamd(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = gc.Stop() })
	// a node that never registers: its ipamd allocates, then the node is "gone"
	ghost, err := harness.StartIpamd(e2e.IpamdOptions("ghost-node"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ghost.Stop() })

	v4, _, _ := e2e.NextSubnet()
	pool := e2e.NewPool(t, v1.IPPoolSpec{Subnet: v4})
	ns := e2e.NewNamespace(t)
	alloc := func(c *rpc.Client, pod *corev1.Pod) {
		t.Helper()
		resp, err := c.Allocate(e2e.Ctx(t), &rpc.AllocateRequest{ContainerID: "ctr-" + pod.Name + "-" + string(pod.UID)[:6], IfName: "net1",
			Network: "net", Pod: rpc.Pod{Namespace: pod.Namespace, Name: pod.Name, UID: string(pod.UID)}, IPv4Pools: []string{pool.Name}})
		if err != nil {
			t.Fatalf("allocate %s: %v", pod.Name, err)
		}
		if len(resp.IPs) != 1 {
			t.Fatalf("allocate %s: %+v", pod.Name, resp)
		}
	}
	sts := e2e.StatefulSetOf(ns, "kv", 1, nil)
	if err := e2e.Suite.Client.Create(e2e.Ctx(t), sts); err != nil {
		t.Fatal(err)
	}

	live := e2e.NewPodOn(t, node, ns, "live", nil, nil, nil)
	deleted := e2e.NewPodOn(t, node, ns, "deleted", nil, nil, nil)
	replaced := e2e.NewPodOn(t, node, ns, "replaced", nil, nil, nil)
	finished := e2e.NewPodOn(t, node, ns, "finished", nil, nil, nil)
	terminating := e2e.NewPodOn(t, node, ns, "terminating", nil, nil, nil)
	// the real StatefulSet controller makes kv-0 (no kubelet runs it: it stays Pending)
	kept := &corev1.Pod{}
	e2e.WaitFor(t, "the StatefulSet controller to create kv-0", func() bool {
		return e2e.Suite.Client.Get(e2e.Ctx(t), client.ObjectKey{Namespace: ns, Name: "kv-0"}, kept) == nil
	})
	onGhost := e2e.NewPodOn(t, "ghost-node", ns, "on-ghost", nil, nil, nil)
	for _, p := range []*corev1.Pod{live, deleted, replaced, finished, terminating, kept} {
		alloc(gc.Client, p)
	}
	alloc(ghost.Client, onGhost)
	e2e.RequireInvariants(t, nil, pool.Name)

	// now make the owners go, each its own way
	e2e.MustDelete(t, deleted, 0)
	e2e.MustDelete(t, replaced, 0)
	e2e.WaitGone(t, "pod replaced to be gone", replaced)
	e2e.NewPodOn(t, node, ns, "replaced", nil, nil, nil) // same name, new UID
	finished.Status.Phase = corev1.PodSucceeded
	if err := e2e.Suite.Client.Status().Update(e2e.Ctx(t), finished); err != nil {
		t.Fatal(err)
	}
	terminating.Finalizers = nil
	e2e.MustDelete(t, terminating, 1) // no kubelet on gc-node: stays Terminating past its 1 s grace
	e2e.MustDelete(t, kept, 0)
	orphan := strings.TrimSuffix(v4, "0/24") + "200"
	e2e.MarkAllocated(t, pool.Name, 200)

	held := func(pod string) bool {
		for _, ep := range e2e.Endpoints(t, ns) {
			if ep.Name == pod && len(ep.Status.Interfaces) > 0 {
				return true
			}
		}
		return false
	}
	for _, gone := range []string{"deleted", "replaced"} {
		e2e.WaitFor(t, gone+"'s address to be recycled", func() bool { return !held(gone) })
	}
	e2e.WaitFor(t, "the orphan "+orphan+" to be freed", func() bool {
		return e2e.FreshState(t, pool.Name).AllocatedIPCount == 5 // live, finished, terminating, kv-0, on-ghost
	})
	// while a pod object exists its addresses stay held, whatever its phase, its node's
	// health or existence: a terminating pod on a node without a kubelet may still run
	stillHeld := []string{"live", "finished", "terminating", "kv-0", "on-ghost"}
	for range 3 { // several recycling rounds (300ms each)
		for _, p := range stillHeld {
			if !held(p) {
				t.Fatalf("%s's address was recycled though its pod object exists", p)
			}
		}
		time.Sleep(400 * time.Millisecond)
	}
	// once the objects go, their addresses come back (on-ghost's through another node's
	// ipamd: its own node is gone)
	for _, p := range []*corev1.Pod{finished, terminating, onGhost} {
		e2e.MustDelete(t, p, 0)
	}
	for _, gone := range []string{"finished", "terminating", "on-ghost"} {
		e2e.WaitFor(t, gone+"'s address to be recycled once its pod is gone", func() bool { return !held(gone) })
	}

	// scaling the set below the ordinal lets its address go
	if err := e2e.Suite.Client.Get(e2e.Ctx(t), client.ObjectKeyFromObject(sts), sts); err != nil {
		t.Fatal(err)
	}
	sts.Spec.Replicas = ptr.To[int32](0)
	if err := e2e.Suite.Client.Update(e2e.Ctx(t), sts); err != nil {
		t.Fatal(err)
	}
	e2e.WaitFor(t, "kv-0's address to be released after scale-down", func() bool { return !held("kv-0") })
	if !held("live") {
		t.Fatal("the live pod's address was recycled")
	}
	if err := gc.Client.Release(e2e.Ctx(t), &rpc.ReleaseRequest{ContainerID: "ctr-live-" + string(live.UID)[:6], Pod: rpc.Pod{Namespace: ns, Name: "live"}}); err != nil {
		t.Fatal(err)
	}
	e2e.RequireNothingLeft(t, ns, pool.Name)
	if log, _ := os.ReadFile(gc.Options.LogPath); !strings.Contains(string(log), "recycled") {
		t.Error("ipamd did not log its recycling")
	}
}
