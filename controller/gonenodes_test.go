package controller

import (
	"context"
	"fmt"
	"testing"
	"time"

	"go.uber.org/zap"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/prometheus/client_golang/prometheus/testutil"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/core/recycle"
)

// endpointOn is the Endpoint of pod ns/name on node, holding 10.9.0.<host> of pool p
// since an hour before now.
func endpointOn(node, name string, host int, now time.Time) *v1.Endpoint {
	return &v1.Endpoint{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name, CreationTimestamp: metav1.NewTime(now.Add(-time.Hour))},
		Status: v1.EndpointStatus{Node: node, PodUID: "uid-" + name, OwnerKind: "ReplicaSet", OwnerName: "rs",
			Interfaces: []v1.EndpointInterface{{ContainerID: "c-" + name, Interface: "net1", PodUID: "uid-" + name,
				Created: metav1.NewTime(now.Add(-time.Hour)), IPs: []v1.EndpointIP{{Address: fmt.Sprintf("10.9.0.%d/24", host), Pool: "p"}}}}}}
}

// The controller recycles the Endpoints of nodes no ipamd looks after, judging each on
// its pod alone: a node gone, one tainted out of service, one unready for longer than the
// grace. A pod that still exists keeps its addresses on an out-of-service node; the
// Endpoints of a ready node, of one unready only moments ago, and of one whose kubelet
// never posted a status stay their ipamd's to recycle.
func TestRecyclingCoversNodesNoIpamdLooksAfter(t *testing.T) {
	now := time.Now()
	grace := time.Minute
	node := func(name string, ready corev1.ConditionStatus, reason string, since time.Duration, taints ...corev1.Taint) *corev1.Node {
		n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: corev1.NodeSpec{Taints: taints}}
		if ready != "" {
			n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: ready, Reason: reason,
				LastTransitionTime: metav1.NewTime(now.Add(-since))}}
		}
		return n
	}
	outOfService := corev1.Taint{Key: corev1.TaintNodeOutOfService, Value: "nodeshutdown", Effect: corev1.TaintEffectNoExecute}
	p := poolOf("p", "10.9.0.0/24", "", "10-17")
	p.pool.Finalizers = []string{PoolProtection} // ipamd hands out nothing of a pool without it
	p.state.SetCounts(253, 8)
	livePod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "on-oos-live", UID: "uid-on-oos-live"}}
	api := fake.NewClientBuilder().WithScheme(testScheme(t)).WithStatusSubresource(&v1.IPPool{}).WithObjects(append(p.objects(), livePod,
		node("oos", corev1.ConditionTrue, "KubeletReady", time.Hour, outOfService),
		node("dead", corev1.ConditionUnknown, "NodeStatusUnknown", 2*grace),
		node("ready", corev1.ConditionTrue, "KubeletReady", time.Hour),
		node("blip", corev1.ConditionFalse, "KubeletNotReady", grace/2),
		node("never", corev1.ConditionUnknown, nodeStatusNeverUpdated, time.Hour),
		endpointOn("gone", "on-gone", 10, now), endpointOn("oos", "on-oos", 11, now), endpointOn("oos", "on-oos-live", 12, now),
		endpointOn("dead", "on-dead", 13, now), endpointOn("ready", "on-ready", 14, now), endpointOn("blip", "on-blip", 15, now),
		endpointOn("never", "on-never", 16, now), endpointOn("ready", "on-ready-2", 17, now),
	)...).Build()
	m := testMetrics(t)
	r := newGoneNodeRecycler(api, api, api, time.Second, grace, m.goneNodeRecycled, zap.NewNop())
	released, err := r.round(context.Background(), now)
	if err != nil {
		t.Fatal(err)
	}
	if released[recycle.ReasonPodDeleted] != 3 || len(released) != 1 {
		t.Fatalf("released %v, want the 3 gone pods of the gone, out-of-service and dead nodes", released)
	}
	if n := testutil.ToFloat64(m.goneNodeRecycled.WithLabelValues(recycle.ReasonPodDeleted)); n != 3 {
		t.Fatalf("underpool_controller_recycled_total{reason=%s} = %v, want 3", recycle.ReasonPodDeleted, n)
	}
	for _, name := range []string{"on-gone", "on-oos", "on-dead"} {
		if err := api.Get(context.Background(), client.ObjectKey{Namespace: "ns", Name: name}, &v1.Endpoint{}); err == nil {
			t.Errorf("Endpoint %s kept", name)
		}
	}
	for _, name := range []string{"on-oos-live", "on-ready", "on-blip", "on-never"} {
		if err := api.Get(context.Background(), client.ObjectKey{Namespace: "ns", Name: name}, &v1.Endpoint{}); err != nil {
			t.Errorf("Endpoint %s: %v", name, err)
		}
	}
	if got := freshPoolState(t, api, "p"); got != "12,14-17" {
		t.Errorf("pool allocated %q, want 12,14-17 (the live pod's and the looked-after nodes')", got)
	}
}

func freshPoolState(t *testing.T, c client.Reader, name string) string {
	t.Helper()
	a := &v1.PoolAllocation{}
	if err := c.Get(context.Background(), client.ObjectKey{Name: name}, a); err != nil {
		t.Fatal(err)
	}
	return a.State.Allocated
}

// The controller caches every Node of the cluster: of each it keeps the name, the
// out-of-service taint and the Ready condition's status, never images, messages, other
// conditions nor labels.
func TestNodeCacheKeepsOnlyWhatRecyclingReads(t *testing.T) {
	full := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n", UID: "u", ResourceVersion: "7", Labels: map[string]string{"a": "b"},
		Annotations: map[string]string{"big": string(make([]byte, 4096))}},
		Spec: corev1.NodeSpec{Taints: []corev1.Taint{{Key: "other", Effect: corev1.TaintEffectNoSchedule},
			{Key: corev1.TaintNodeOutOfService, Value: "nodeshutdown", Effect: corev1.TaintEffectNoExecute}}},
		Status: corev1.NodeStatus{Images: []corev1.ContainerImage{{Names: []string{"img"}, SizeBytes: 1}},
			Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Message: "kubelet is posting ready status"},
				{Type: corev1.NodeMemoryPressure, Status: corev1.ConditionFalse}}}}
	out, err := nodeTransform(full)
	if err != nil {
		t.Fatal(err)
	}
	slim := out.(*corev1.Node)
	if slim.Name != "n" || slim.UID != "u" || slim.ResourceVersion != "7" || len(slim.Labels)+len(slim.Annotations) != 0 ||
		len(slim.Status.Images) != 0 || len(slim.Spec.Taints) != 1 || !outOfService(slim) ||
		len(slim.Status.Conditions) != 1 || slim.Status.Conditions[0].Type != corev1.NodeReady || slim.Status.Conditions[0].Message != "" {
		t.Fatalf("cached node %+v", slim)
	}
}
