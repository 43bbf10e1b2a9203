package lifecycle

import (
	"fmt"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/utils/ptr"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/core/apppool"
	"github.com/underpool/underpool/tests/e2e"
)

// widgetKind is the third-party workload kind of tests/testdata/crds/widgets.yaml: a CRD
// with nothing but a scale subresource.
var widgetKind = schema.GroupVersionKind{Group: "example.underpool.io", Version: "v1", Kind: "Widget"}

// widgetPod creates a pod of the Widget on the lifecycle's first node, as the Widget's
// controller would: controlled by the Widget, its template's annotations on it.
func (lc *lifecycle) widgetPod(w *unstructured.Unstructured, name string, annotations map[string]string) {
	lc.t.Helper()
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: lc.ns, Name: name, Labels: map[string]string{"app": w.GetName()},
		Annotations: lc.onNetwork(annotations),
		OwnerReferences: []metav1.OwnerReference{{APIVersion: widgetKind.GroupVersion().String(), Kind: widgetKind.Kind,
			Name: w.GetName(), UID: w.GetUID(), Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true)}}},
		Spec: corev1.PodSpec{NodeName: lc.nodes[0].name, TerminationGracePeriodSeconds: ptr.To[int64](lifecycleGrace),
			Containers: []corev1.Container{{Name: "c", Image: "pause"}}}}
	lc.create(pod)
}

// A workload of a kind underpool does not know, with a scale subresource: its pool is
// carved when its first pods appear (from their annotations), sized to the replicas its
// scale subresource says, grows when it is scaled and its next pod comes, and goes with
// it. No controller runs for the Widget: the test makes its pods, as its controller
// would, and the real garbage collector takes them when the Widget is deleted.
func TestAThirdPartyWorkloadsApplicationPoolFollowsItsScale(t *testing.T) {
	subnet, base := appSubnet(t)
	lc := newLifecycle(t, lifecycleOptions{})
	w := &unstructured.Unstructured{}
	w.SetGroupVersionKind(widgetKind)
	w.SetNamespace(lc.ns)
	w.SetName("gizmo")
	w.Object["spec"] = map[string]any{"replicas": int64(2)}
	lc.create(w)
	ann := onSubnets(subnet)
	for i := range 2 {
		lc.widgetPod(w, fmt.Sprintf("gizmo-%d", i), ann)
	}
	pool := apppool.Workload{Kind: "Widget.example.underpool.io", Namespace: lc.ns, Name: "gizmo"}.PoolName(v1.IPv4)
	e2e.WaitPoolSize(t, pool, 2)
	before := lc.servedFrom("gizmo", 2, pool)
	for pod, addr := range before {
		if !strings.HasPrefix(addr, base) {
			t.Fatalf("%s holds %s, not an address of Subnet %s", pod, addr, subnet.Name)
		}
	}
	lc.requireInvariants(pool)

	// scaled, and its controller makes the third pod
	lc.scale(w, 3)
	lc.widgetPod(w, "gizmo-2", ann)
	e2e.WaitPoolSize(t, pool, 3)
	lc.servedFrom("gizmo", 3, pool)
	lc.requireKept(before, "after scaling the Widget")
	lc.requireInvariants(pool)

	lc.deleteWithDependents(w)
	lc.waitPoolGone(pool)
	lc.requireNothingLeft()
}
