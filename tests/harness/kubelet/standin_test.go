package kubelet_test

import (
	"context"
	"os"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/underpool/underpool/tests/harness"
	"github.com/underpool/underpool/tests/harness/kubelet"
)

// The stand-in's own behaviour, one node: a failed ADD is reported and retried with a new
// sandbox; RestartSandbox gives a running pod a new sandbox with and without DEL; a stopped
// stand-in lets its node go NotReady while the pod's netns stays, and once started again it
// keeps the sandbox it made and finishes a deletion that happened while it was down; a pod
// whose containers ignore SIGTERM is kept for its whole grace period.
func TestStandIn(t *testing.T) {
	cl := startCluster(t, "sim-1")
	kl := cl.nodes["sim-1"]
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	c := cl.c
	pool := cl.newPool(t, ctx, "standin", "10.250.241.0/24")
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "standin"}}
	if err := c.Create(ctx, ns); err != nil {
		t.Fatal(err)
	}

	// The NAD is missing at first: multus fails ADD, the stand-in says so in an event
	// and retries; once the NAD exists the pod comes up.
	pod := newPod(t, ctx, c, ns.Name, "p", nil)
	eventually(t, ctx, "FailedCreatePodSandBox event", func(ctx context.Context) bool {
		var evs corev1.EventList
		if err := c.List(ctx, &evs, client.InNamespace(ns.Name)); err != nil {
			return false
		}
		for _, e := range evs.Items {
			if e.Reason == "FailedCreatePodSandBox" && e.InvolvedObject.UID == pod.UID && e.Source.Component == "kubelet" {
				return true
			}
		}
		return false
	})
	if sbs := kl.Sandboxes(); len(sbs) != 0 {
		t.Fatalf("a failed sandbox was kept: %+v", sbs)
	}
	cl.newNAD(t, ctx, ns.Name, "underlay", pool.Name)
	waitRunning(t, ctx, c, pod)
	sb1 := requireSandbox(t, kl, pod)

	// RestartSandbox with DEL, then without (a DEL that was lost)
	for i, runDel := range []bool{true, false} {
		before := requireSandbox(t, kl, pod)
		if err := kl.RestartSandbox(ns.Name, pod.Name, runDel); err != nil {
			t.Fatalf("RestartSandbox(runDel=%v): %v", runDel, err)
		}
		after := requireSandbox(t, kl, pod)
		if after.ContainerID == before.ContainerID || after.NetNS.Path() == before.NetNS.Path() || after.Attempt != i+1 {
			t.Fatalf("RestartSandbox(runDel=%v): sandbox %.12s in %s (attempt %d), before %.12s in %s",
				runDel, after.ContainerID, after.NetNS.Name(), after.Attempt, before.ContainerID, before.NetNS.Name())
		}
		if _, err := os.Stat(before.NetNS.Path()); !os.IsNotExist(err) {
			t.Fatalf("old netns %s still there (%v)", before.NetNS.Path(), err)
		}
		eventually(t, ctx, "status shows the new sandbox's containers", func(ctx context.Context) bool {
			return c.Get(ctx, client.ObjectKeyFromObject(pod), pod) == nil && len(pod.Status.ContainerStatuses) == 1 &&
				pod.Status.ContainerStatuses[0].RestartCount == int32(i+1) && pod.Status.ContainerStatuses[0].Ready
		})
	}
	if sb1.ContainerID == requireSandbox(t, kl, pod).ContainerID {
		t.Fatal("sandbox never changed")
	}

	// A dead kubelet: the node goes NotReady (Unknown), the pod's netns stays.
	kl.Stop()
	eventually(t, ctx, "node NotReady after the stand-in stopped", func(ctx context.Context) bool {
		return nodeReady(ctx, c, "sim-1") == corev1.ConditionUnknown
	})
	running := requireSandbox(t, kl, pod)
	if _, err := os.Stat(running.NetNS.Path()); err != nil {
		t.Fatalf("netns of a running pod went while the kubelet was down: %v", err)
	}
	// deleted while the kubelet is down: nothing can finish it yet
	if err := c.Delete(ctx, pod); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	if err := c.Get(ctx, client.ObjectKeyFromObject(pod), pod); err != nil || pod.DeletionTimestamp == nil {
		t.Fatalf("pod should be Terminating while its kubelet is down: %v %v", err, pod.DeletionTimestamp)
	}
	if err := kl.Start(); err != nil {
		t.Fatal(err)
	}
	eventually(t, ctx, "node Ready again", func(ctx context.Context) bool {
		return nodeReady(ctx, c, "sim-1") == corev1.ConditionTrue
	})
	eventually(t, ctx, "pod deleted while the kubelet was down is gone after its restart", func(ctx context.Context) bool {
		err := c.Get(ctx, client.ObjectKeyFromObject(pod), &corev1.Pod{})
		_, has := kl.Sandbox(ns.Name, pod.Name)
		return client.IgnoreNotFound(err) == nil && err != nil && !has
	})
	if _, err := os.Stat(running.NetNS.Path()); !os.IsNotExist(err) {
		t.Fatalf("netns %s still there after the pod went (%v)", running.NetNS.Path(), err)
	}

	// A restart keeps what exists: the sandbox is not made again.
	q := newPod(t, ctx, c, ns.Name, "q", map[string]string{kubelet.IgnoreSIGTERMAnnotation: "true"})
	waitRunning(t, ctx, c, q)
	before := requireSandbox(t, kl, q)
	kl.Stop()
	if err := kl.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	if after := requireSandbox(t, kl, q); after.ContainerID != before.ContainerID {
		t.Fatalf("restart made a new sandbox %.12s for a running pod (had %.12s)", after.ContainerID, before.ContainerID)
	}

	// SIGTERM ignored: the pod stays until its grace period (3 s) is over, that is until
	// its deletionTimestamp (which the apiserver rounds down to the second).
	if err := c.Delete(ctx, q, client.GracePeriodSeconds(3)); err != nil {
		t.Fatal(err)
	}
	if err := c.Get(ctx, client.ObjectKeyFromObject(q), q); err != nil || q.DeletionTimestamp == nil {
		t.Fatalf("pod ignoring SIGTERM went at once (%v)", err)
	}
	eventually(t, ctx, "pod ignoring SIGTERM gone after its grace period", func(ctx context.Context) bool {
		err := c.Get(ctx, client.ObjectKeyFromObject(q), &corev1.Pod{})
		return err != nil && client.IgnoreNotFound(err) == nil
	})
	if early := time.Until(q.DeletionTimestamp.Time); early > 0 {
		t.Fatalf("pod ignoring SIGTERM went %v before its grace period ended", early)
	}
	if _, err := os.Stat(before.NetNS.Path()); !os.IsNotExist(err) {
		t.Fatalf("netns %s still there after the pod went (%v)", before.NetNS.Path(), err)
	}
}

// newPod creates a pod on the underlay network for the scheduler to place.
func newPod(t *testing.T, ctx context.Context, c client.Client, ns, name string, annotations map[string]string) *corev1.Pod {
	t.Helper()
	a := map[string]string{"k8s.v1.cni.cncf.io/networks": "underlay"}
	for k, v := range annotations {
		a[k] = v
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Annotations: a},
		Spec: corev1.PodSpec{TerminationGracePeriodSeconds: ptr.To[int64](30),
			Containers: []corev1.Container{{Name: "c", Image: "pause"}}},
	}
	if err := c.Create(ctx, pod); err != nil {
		t.Fatal(err)
	}
	return pod
}

func waitRunning(t *testing.T, ctx context.Context, c client.Client, pod *corev1.Pod) {
	t.Helper()
	eventually(t, ctx, "pod "+pod.Name+" Running and Ready", func(ctx context.Context) bool {
		if c.Get(ctx, client.ObjectKeyFromObject(pod), pod) != nil || pod.Status.Phase != corev1.PodRunning {
			return false
		}
		for _, cond := range pod.Status.Conditions {
			if cond.Type == corev1.PodReady {
				return cond.Status == corev1.ConditionTrue
			}
		}
		return false
	})
}

func requireSandbox(t *testing.T, kl *kubelet.Kubelet, pod *corev1.Pod) kubelet.Sandbox {
	t.Helper()
	sb, ok := kl.Sandbox(pod.Namespace, pod.Name)
	if !ok || sb.PodUID != pod.UID {
		t.Fatalf("pod %s: no sandbox for UID %s (%+v)", pod.Name, pod.UID, sb)
	}
	if _, err := harness.Addrs(sb.NetNS.Path(), "net1"); err != nil {
		t.Fatalf("pod %s: no net1 in its sandbox %s: %v", pod.Name, sb.NetNS.Name(), err)
	}
	return sb
}

func nodeReady(ctx context.Context, c client.Client, name string) corev1.ConditionStatus {
	node := &corev1.Node{}
	if err := c.Get(ctx, client.ObjectKey{Name: name}, node); err != nil {
		return ""
	}
	for _, cond := range node.Status.Conditions {
		if cond.Type == corev1.NodeReady {
			return cond.Status
		}
	}
	return ""
}
