package e2e

import (
	"context"
	"fmt"
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
	if err := suite.client.Create(ctx(t), &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: node}}); err != nil {
		t.Fatal(err)
	}
	o := harness.DefaultIpamdOptions(suite.bin, suite.cp.KubeconfigPath, node, suite.dir)
	o.ExtraArgs = []string{"--gc-interval=300ms", "--gc-grace=1s", "--commit-window=" + commitWindow}
	gc, err := harness.StartIpamd(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = gc.Stop() })
	// a node that never registers: its ipamd allocates, then the node is "gone"
	ghost, err := harness.StartIpamd(ipamdOptions("ghost-node"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ghost.Stop() })

	v4, _, _ := nextSubnet()
	pool := newPool(t, v1.IPPoolSpec{Subnet: v4})
	ns := newNamespace(t)
	alloc := func(c *rpc.Client, pod *corev1.Pod) {
		t.Helper()
		resp, err := c.Allocate(ctx(t), &rpc.AllocateRequest{ContainerID: "ctr-" + pod.Name + "-" + string(pod.UID)[:6], IfName: "net1",
			Network: "net", Pod: rpc.Pod{Namespace: pod.Namespace, Name: pod.Name, UID: string(pod.UID)}, IPv4Pools: []string{pool.Name}})
		if err != nil {
			t.Fatalf("allocate %s: %v", pod.Name, err)
		}
		if len(resp.IPs) != 1 {
			t.Fatalf("allocate %s: %+v", pod.Name, resp)
		}
	}
	sts := statefulSetOf(ns, "kv", 1, nil)
	if err := suite.client.Create(ctx(t), sts); err != nil {
		t.Fatal(err)
	}

	live := newPodOn(t, node, ns, "live", nil, nil, nil)
	deleted := newPodOn(t, node, ns, "deleted", nil, nil, nil)
	replaced := newPodOn(t, node, ns, "replaced", nil, nil, nil)
	finished := newPodOn(t, node, ns, "finished", nil, nil, nil)
	terminating := newPodOn(t, node, ns, "terminating", nil, nil, nil)
	// the real StatefulSet controller makes kv-0 (no kubelet runs it: it stays Pending)
	kept := &corev1.Pod{}
	waitFor(t, "the StatefulSet controller to create kv-0", func() bool {
		return suite.client.Get(ctx(t), client.ObjectKey{Namespace: ns, Name: "kv-0"}, kept) == nil
	})
	onGhost := newPodOn(t, "ghost-node", ns, "on-ghost", nil, nil, nil)
	for _, p := range []*corev1.Pod{live, deleted, replaced, finished, terminating, kept} {
		alloc(gc.Client, p)
	}
	alloc(ghost.Client, onGhost)
	requireInvariants(t, nil, pool.Name)

	// now make the owners go, each its own way
	mustDelete(t, deleted, 0)
	mustDelete(t, replaced, 0)
	waitGone(t, "pod replaced to be gone", replaced)
	newPodOn(t, node, ns, "replaced", nil, nil, nil) // same name, new UID
	finished.Status.Phase = corev1.PodSucceeded
	if err := suite.client.Status().Update(ctx(t), finished); err != nil {
		t.Fatal(err)
	}
	terminating.Finalizers = nil
	mustDelete(t, terminating, 1) // no kubelet on gc-node: stays Terminating past its 1 s grace
	mustDelete(t, kept, 0)
	orphan := strings.TrimSuffix(v4, "0/24") + "200"
	markAllocated(t, pool.Name, 200)

	held := func(pod string) bool {
		for _, ep := range endpoints(t, ns) {
			if ep.Name == pod && len(ep.Status.Interfaces) > 0 {
				return true
			}
		}
		return false
	}
	for _, gone := range []string{"deleted", "replaced"} {
		waitFor(t, gone+"'s address to be recycled", func() bool { return !held(gone) })
	}
	waitFor(t, "the orphan "+orphan+" to be freed", func() bool {
		return freshPool(t, pool.Name).Status.AllocatedIPCount == 5 // live, finished, terminating, kv-0, on-ghost
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
		mustDelete(t, p, 0)
	}
	for _, gone := range []string{"finished", "terminating", "on-ghost"} {
		waitFor(t, gone+"'s address to be recycled once its pod is gone", func() bool { return !held(gone) })
	}

	// scaling the set below the ordinal lets its address go
	if err := suite.client.Get(ctx(t), client.ObjectKeyFromObject(sts), sts); err != nil {
		t.Fatal(err)
	}
	sts.Spec.Replicas = ptr.To[int32](0)
	if err := suite.client.Update(ctx(t), sts); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "kv-0's address to be released after scale-down", func() bool { return !held("kv-0") })
	if !held("live") {
		t.Fatal("the live pod's address was recycled")
	}
	if err := gc.Client.Release(ctx(t), &rpc.ReleaseRequest{ContainerID: "ctr-live-" + string(live.UID)[:6], Pod: rpc.Pod{Namespace: ns, Name: "live"}}); err != nil {
		t.Fatal(err)
	}
	requireNothingLeft(t, ns, pool.Name)
	if log, _ := os.ReadFile(gc.Options.LogPath); !strings.Contains(string(log), "recycled") {
		t.Error("ipamd did not log its recycling")
	}
}

// markAllocated sets an address in the pool's status without any Endpoint: what a crash
// between the pool commit and the Endpoint write leaves behind.
func markAllocated(t *testing.T, pool string, offset int) {
	t.Helper()
	for {
		p := freshPool(t, pool)
		if p.Status.Allocated != "" {
			p.Status.Allocated += ","
		}
		p.Status.Allocated += fmt.Sprint(offset)
		p.Status.AllocatedIPCount++
		err := suite.client.Status().Update(context.Background(), p)
		if err == nil {
			return
		}
		if !strings.Contains(err.Error(), "modified") {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
