package controller

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/core/apppool"
)

// fakeScales is the scale subresource of the workloads a test has: replicas by name; a
// name missing is a workload gone.
type fakeScales struct {
	replicas map[string]int32
	noScale  bool
}

var widgetGVK = schema.GroupVersionKind{Group: "example.com", Version: "v1", Kind: "Widget"}

func (f *fakeScales) Scale(_ context.Context, w apppool.Workload) (int32, string, schema.GroupVersionKind, error) {
	if f.noScale {
		return 0, "", widgetGVK, &noScaleError{kind: w.Kind}
	}
	n, ok := f.replicas[w.Name]
	if !ok {
		return 0, "", schema.GroupVersionKind{}, apierrors.NewNotFound(schema.GroupResource{Group: "example.com", Resource: "widgets"}, w.Name)
	}
	return n, "app=" + w.Name, widgetGVK, nil
}

// widgetPod is a pod a Widget controller made (the test plays that controller).
func widgetPod(name, widget string, created time.Time, annotations map[string]string) *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name, CreationTimestamp: metav1.NewTime(created), Annotations: annotations,
		OwnerReferences: []metav1.OwnerReference{{APIVersion: "example.com/v1", Kind: "Widget", Name: widget, UID: "widget-uid", Controller: ptr.To(true)}}}}
}

// A workload of a kind the controller does not know (a CRD with a scale subresource): its
// pool is carved from what its newest pod names, sized to the replicas its scale
// subresource says, resized when they change, kept while it exists without pods, and
// deleted once the scale read says it is gone.
func TestAThirdPartyWorkloadsPoolFollowsItsScale(t *testing.T) {
	ann := map[string]string{v1.AnnotationSubnet: `{"ipv4":["s"]}`, v1.AnnotationIPNumber: "+1"}
	old := widgetPod("w-a", "w", time.Now().Add(-time.Hour), map[string]string{v1.AnnotationSubnet: `{"ipv4":["other"]}`})
	newest := widgetPod("w-b", "w", time.Now(), ann)
	api := fake.NewClientBuilder().WithScheme(testScheme(t)).WithObjects(subnetObj("s", "10.0.0.0/24"), old, newest).
		WithIndex(podMetadata(), indexPodWorkload, podWorkloadIndex).
		WithIndex(&appsv1.ReplicaSet{}, indexAboveWorkload, aboveWorkloadIndex).WithIndex(&batchv1.Job{}, indexAboveWorkload, aboveWorkloadIndex).Build()
	scales := &fakeScales{replicas: map[string]int32{"w": 2}}
	rec := events.NewFakeRecorder(100)
	r := &appPools{c: api, api: api, others: &otherKinds{cache: api, scale: scales}, events: rec, carving: &sync.Mutex{}, changes: testMetrics(t).appPoolChanges}
	w := apppool.Workload{Kind: "Widget.example.com", Namespace: "ns", Name: "w"}
	req := requestFor(w)
	if req.Name != "Widget.example.com/w" {
		t.Fatalf("request %v", req)
	}
	run := func() reconcile.Result {
		t.Helper()
		res, err := r.Reconcile(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	if res := run(); res.RequeueAfter != othersRecheck {
		t.Errorf("recheck %v, want %v: nothing is watched of the workload itself", res.RequeueAfter, othersRecheck)
	}
	p := workloadPool(t, api, w)
	if p == nil || usable(t, p) != 3 || p.Labels[apppool.LabelSubnet] != "s" || p.Spec.PodAffinity.MatchLabels["app"] != "w" {
		t.Fatalf("pool %+v, want 3 addresses of Subnet s (the newest pod's annotations), pods selected by the scale's selector", p)
	}
	if ev := strings.Join(drain(rec), "\n"); !strings.Contains(ev, "AppPoolCarved") {
		t.Errorf("events %q", ev)
	}

	scales.replicas["w"] = 4
	run()
	if p := workloadPool(t, api, w); usable(t, p) != 5 {
		t.Fatalf("scaled to 4: %d addresses, want 5", usable(t, p))
	}
	for _, pod := range []client.Object{old, newest} {
		if err := api.Delete(context.Background(), pod); err != nil {
			t.Fatal(err)
		}
	}
	run()
	if p := workloadPool(t, api, w); p == nil || usable(t, p) != 5 {
		t.Fatalf("without pods, while the workload exists: pool %+v, want it kept", p)
	}
	delete(scales.replicas, "w")
	run()
	if p := workloadPool(t, api, w); p != nil {
		t.Fatalf("pool %s stayed after its workload went", p.Name)
	}
}

// A kind without a scale subresource cannot have its pool follow its replicas: the
// workload is told so, by its kind, and nothing is carved.
func TestAKindWithoutAScaleSubresourceIsToldWhy(t *testing.T) {
	pod := widgetPod("w-a", "w", time.Now(), map[string]string{v1.AnnotationSubnet: `{"ipv4":["s"]}`})
	api := fake.NewClientBuilder().WithScheme(testScheme(t)).WithObjects(subnetObj("s", "10.0.0.0/24"), pod).
		WithIndex(podMetadata(), indexPodWorkload, podWorkloadIndex).
		WithIndex(&appsv1.ReplicaSet{}, indexAboveWorkload, aboveWorkloadIndex).WithIndex(&batchv1.Job{}, indexAboveWorkload, aboveWorkloadIndex).Build()
	rec := events.NewFakeRecorder(10)
	r := &appPools{c: api, api: api, others: &otherKinds{cache: api, scale: &fakeScales{noScale: true}}, events: rec, carving: &sync.Mutex{}, changes: testMetrics(t).appPoolChanges}
	if res, err := r.Reconcile(context.Background(), requestFor(apppool.Workload{Kind: "Widget.example.com", Namespace: "ns", Name: "w"})); err != nil || res.RequeueAfter == 0 {
		t.Fatalf("%+v %v", res, err)
	}
	requireDisjoint(t, api, 0)
	if ev := strings.Join(drain(rec), "\n"); !strings.Contains(ev, "Widget.example.com has no scale subresource") || !strings.Contains(ev, v1.AnnotationIPPool) {
		t.Errorf("events %q", ev)
	}
}

// The controller caches every pod's metadata: of the pods of other kinds' workloads that
// name a Subnet it keeps their controller and the pool annotations, of any other pod its
// name alone; and only their comings and goings reach the reconciler.
func TestCachedPodsKeepOnlyWhatOtherKindsPoolsNeed(t *testing.T) {
	meta := func(p *corev1.Pod) *metav1.PartialObjectMetadata {
		m := podMetadata()
		m.ObjectMeta = p.ObjectMeta
		m.Labels = map[string]string{"app": "x"}
		m.Annotations["k8s.v1.cni.cncf.io/network-status"] = strings.Repeat("x", 1000)
		return m
	}
	widget := meta(widgetPod("w-a", "w", time.Now(), map[string]string{v1.AnnotationSubnet: `{"ipv4":["s"]}`, v1.AnnotationReclaim: "false"}))
	out, _ := slimPod(widget)
	slim := out.(*metav1.PartialObjectMetadata)
	if len(slim.Annotations) != 2 || slim.Labels != nil || len(slim.OwnerReferences) != 1 || podWorkloadIndex(slim)[0] != "Widget.example.com/ns/w" {
		t.Errorf("a Widget's pod slimmed to %+v", slim.ObjectMeta)
	}
	rsPod := widgetPod("web-1", "web-5d9f", time.Now(), map[string]string{v1.AnnotationSubnet: `{"ipv4":["s"]}`})
	rsPod.OwnerReferences[0].APIVersion, rsPod.OwnerReferences[0].Kind = "apps/v1", "ReplicaSet"
	out, _ = slimPod(meta(rsPod))
	rsSlim := out.(*metav1.PartialObjectMetadata)
	if rsSlim.Annotations != nil || rsSlim.OwnerReferences != nil || rsSlim.Name != "web-1" {
		t.Errorf("a ReplicaSet's pod slimmed to %+v", rsSlim.ObjectMeta)
	}
	if podsComeAndGo.Update(event.UpdateEvent{ObjectOld: widget, ObjectNew: widget}) || !podsComeAndGo.Create(event.CreateEvent{Object: widget}) {
		t.Error("pod status updates reach the reconciler, or creations do not")
	}
	queue := &fakeQueue{}
	enqueueOtherKind().Create(context.Background(), event.CreateEvent{Object: meta(rsPod)}, queue)
	enqueueOtherKind().Create(context.Background(), event.CreateEvent{Object: slim}, queue)
	gone := &v1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: "p", Annotations: map[string]string{apppool.AnnotationOwner: "Widget.example.com/ns/w"}}}
	enqueueOwner("").Delete(context.Background(), event.DeleteEvent{Object: gone}, queue)
	builtin := &v1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: "q", Annotations: map[string]string{apppool.AnnotationOwner: "Deployment/ns/web"}}}
	enqueueOwner("").Delete(context.Background(), event.DeleteEvent{Object: builtin}, queue)
	if len(queue.added) != 2 || queue.added[0].Name != "Widget.example.com/w" || queue.added[1] != queue.added[0] {
		t.Errorf("enqueued %v, want the Widget twice (its pod, its pool) and nothing for the ReplicaSet's pod or the Deployment's pool", queue.added)
	}
}

// A kind that runs its pods through ReplicaSets (an Argo Rollout, say): the controller
// learns of it from its ReplicaSets, reads the pool's annotations from the newest one's
// template, sizes the pool by the Rollout's scale, and carves nothing for the ReplicaSets.
func TestAThirdPartyKindOverReplicaSetsGetsItsPoolFromTheirTemplate(t *testing.T) {
	rollout := func(name string, created time.Time, subnet string) *appsv1.ReplicaSet {
		rs := &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name, CreationTimestamp: metav1.NewTime(created),
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "argoproj.io/v1alpha1", Kind: "Rollout", Name: "canary", UID: "ro-uid", Controller: ptr.To(true)}}},
			Spec: appsv1.ReplicaSetSpec{Replicas: ptr.To[int32](1)}}
		rs.Spec.Template.Annotations = map[string]string{v1.AnnotationSubnet: `{"ipv4":["` + subnet + `"]}`}
		return rs
	}
	old, current := rollout("canary-6d", time.Now().Add(-time.Hour), "gone"), rollout("canary-7f", time.Now(), "s")
	api := fake.NewClientBuilder().WithScheme(testScheme(t)).WithObjects(subnetObj("s", "10.0.0.0/24"), old, current).
		WithIndex(podMetadata(), indexPodWorkload, podWorkloadIndex).
		WithIndex(&appsv1.ReplicaSet{}, indexAboveWorkload, aboveWorkloadIndex).WithIndex(&batchv1.Job{}, indexAboveWorkload, aboveWorkloadIndex).Build()
	queue := &fakeQueue{}
	enqueueOtherKindAbove().Create(context.Background(), event.CreateEvent{Object: current}, queue)
	w := apppool.Workload{Kind: "Rollout.argoproj.io", Namespace: "ns", Name: "canary"}
	if len(queue.added) != 1 || queue.added[0] != requestFor(w) {
		t.Fatalf("the ReplicaSet enqueued %v, want its Rollout", queue.added)
	}
	rec := events.NewFakeRecorder(10)
	r := &appPools{c: api, api: api, others: &otherKinds{cache: api, scale: &fakeScales{replicas: map[string]int32{"canary": 3}}},
		events: rec, carving: &sync.Mutex{}, changes: testMetrics(t).appPoolChanges}
	if _, err := r.Reconcile(context.Background(), requestFor(w)); err != nil {
		t.Fatal(err)
	}
	if p := workloadPool(t, api, w); p == nil || usable(t, p) != 3 || p.Labels[apppool.LabelSubnet] != "s" {
		t.Fatalf("pool %+v, want 3 addresses of Subnet s (the newest ReplicaSet's template); events %q", p, drain(rec))
	}
	rsReconciler, _ := reconciler(t, api, apppool.KindReplicaSet)
	reconcileOnce(t, rsReconciler, "ns", "canary-7f")
	requireDisjoint(t, api, 1)
}
