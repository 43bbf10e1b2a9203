package controller

import (
	"context"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/event"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/core/apppool"
)

func template(labels map[string]string) corev1.PodTemplateSpec {
	return corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels,
		Annotations: map[string]string{v1.AnnotationSubnet: `{"ipv4":["s"]}`, v1.AnnotationIPNumber: "+1"}}}
}

// Each built-in kind gets a pool sized to the pods it runs at once (+1 here): a
// DaemonSet's nodes, a Job's parallelism, a CronJob's jobTemplate's, a bare ReplicaSet's
// replicas. A ReplicaSet or Job with a controller above it gets none: its pods use the
// pool of that controller (a Deployment, a CronJob).
func TestEachKindGetsAPoolSizedToItsPods(t *testing.T) {
	sel := &metav1.LabelSelector{MatchLabels: map[string]string{"app": "x"}}
	cronOwned := []metav1.OwnerReference{{APIVersion: "batch/v1", Kind: "CronJob", Name: "nightly", UID: "cj", Controller: ptr.To(true)}}
	depOwned := []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "Deployment", Name: "web", UID: "d", Controller: ptr.To(true)}}
	objs := []client.Object{subnetObj("s", "10.0.0.0/24"),
		&appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "agent"}, Spec: appsv1.DaemonSetSpec{Selector: sel, Template: template(nil)},
			Status: appsv1.DaemonSetStatus{DesiredNumberScheduled: 3}},
		&batchv1.Job{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "batch"}, Spec: batchv1.JobSpec{Parallelism: ptr.To[int32](4), Template: template(nil)}},
		&batchv1.Job{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "once"}, Spec: batchv1.JobSpec{Template: template(nil)}},
		&batchv1.Job{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "nightly-2900", OwnerReferences: cronOwned}, Spec: batchv1.JobSpec{Template: template(nil)}},
		&batchv1.CronJob{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "nightly"}, Spec: batchv1.CronJobSpec{Schedule: "* * * * *",
			JobTemplate: batchv1.JobTemplateSpec{Spec: batchv1.JobSpec{Parallelism: ptr.To[int32](2), Template: template(map[string]string{"app": "nightly"})}}}},
		&appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "bare"}, Spec: appsv1.ReplicaSetSpec{Replicas: ptr.To[int32](2), Selector: sel, Template: template(nil)}},
		&appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "web-5d9f", OwnerReferences: depOwned}, Spec: appsv1.ReplicaSetSpec{Replicas: ptr.To[int32](2), Selector: sel, Template: template(nil)}},
	}
	api := fake.NewClientBuilder().WithScheme(testScheme(t)).WithObjects(objs...).Build()
	for _, c := range []struct {
		kind, name string
		want       uint64 // 0: no pool
	}{
		{"DaemonSet", "agent", 4}, {"Job", "batch", 5}, {"Job", "once", 2}, {"Job", "nightly-2900", 0},
		{"CronJob", "nightly", 3}, {"ReplicaSet", "bare", 3}, {"ReplicaSet", "web-5d9f", 0},
	} {
		r, rec := reconciler(t, api, c.kind)
		reconcileOnce(t, r, "ns", c.name)
		p := workloadPool(t, api, apppool.Workload{Kind: c.kind, Namespace: "ns", Name: c.name})
		switch {
		case c.want == 0 && p != nil:
			t.Errorf("%s %s got pool %s: its pods use the pool of the controller above it", c.kind, c.name, p.Name)
		case c.want > 0 && (p == nil || usable(t, p) != c.want):
			t.Errorf("%s %s: pool %+v, want %d addresses (events %q)", c.kind, c.name, p, c.want, drain(rec))
		}
	}
	cron := workloadPool(t, api, apppool.Workload{Kind: "CronJob", Namespace: "ns", Name: "nightly"})
	if cron.Spec.PodAffinity == nil || cron.Spec.PodAffinity.MatchLabels["app"] != "nightly" {
		t.Errorf("the CronJob's pool selects its Jobs' pods by %v, want its template's labels", cron.Spec.PodAffinity)
	}
	requireDisjoint(t, api, 5)
}

// A DaemonSet's pool follows the nodes it runs on (its status), and goes with it.
func TestADaemonSetsPoolFollowsItsNodesAndGoesWithIt(t *testing.T) {
	ds := &appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "agent"}, Spec: appsv1.DaemonSetSpec{Template: template(nil)}}
	delete(ds.Spec.Template.Annotations, v1.AnnotationIPNumber) // exactly its nodes
	api := fake.NewClientBuilder().WithScheme(testScheme(t)).WithObjects(subnetObj("s", "10.0.0.0/24"), ds).WithStatusSubresource(ds).Build()
	r, _ := reconciler(t, api, apppool.KindDaemonSet)
	w := apppool.Workload{Kind: "DaemonSet", Namespace: "ns", Name: "agent"}
	reconcileOnce(t, r, "ns", "agent")
	if p := workloadPool(t, api, w); p != nil {
		t.Fatalf("a DaemonSet on no node yet got pool %v", p.Spec.IPs)
	}
	for _, nodes := range []int32{2, 5, 1} {
		ds.Status.DesiredNumberScheduled = nodes
		if err := api.Status().Update(context.Background(), ds); err != nil {
			t.Fatal(err)
		}
		reconcileOnce(t, r, "ns", "agent")
		if p := workloadPool(t, api, w); p == nil || usable(t, p) != uint64(nodes) {
			t.Fatalf("on %d nodes: pool %+v, want as many addresses", nodes, p)
		}
	}
	if err := api.Delete(context.Background(), ds); err != nil {
		t.Fatal(err)
	}
	reconcileOnce(t, r, "ns", "agent")
	if p := workloadPool(t, api, w); p != nil {
		t.Fatalf("pool %s stayed after its DaemonSet went", p.Name)
	}
}

// A Job's or DaemonSet's status changes with every pod; only what changes its pool
// (replicas, parallelism, nodes, the template's annotations) reconciles it.
func TestOnlyChangesOfSizeOrTemplateReconcileAWorkload(t *testing.T) {
	job := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "j"}, Spec: batchv1.JobSpec{Parallelism: ptr.To[int32](2), Template: template(nil)}}
	progressed := job.DeepCopy()
	progressed.Status.Active, progressed.Status.Succeeded = 1, 1
	wider := job.DeepCopy()
	wider.Spec.Parallelism = ptr.To[int32](3)
	retemplated := job.DeepCopy()
	retemplated.Spec.Template.Annotations = map[string]string{v1.AnnotationSubnet: `{"ipv4":["t"]}`}
	p := sizeOrTemplateChanged(builtinKinds[apppool.KindJob])
	if p.Update(event.UpdateEvent{ObjectOld: job, ObjectNew: progressed}) {
		t.Error("a Job's progress reconciled it")
	}
	if !p.Update(event.UpdateEvent{ObjectOld: job, ObjectNew: wider}) || !p.Update(event.UpdateEvent{ObjectOld: job, ObjectNew: retemplated}) {
		t.Error("a change of parallelism or template annotations did not reconcile the Job")
	}
	ds := &appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "d"}}
	more := ds.DeepCopy()
	more.Status.DesiredNumberScheduled = 4
	if !sizeOrTemplateChanged(builtinKinds[apppool.KindDaemonSet]).Update(event.UpdateEvent{ObjectOld: ds, ObjectNew: more}) {
		t.Error("a DaemonSet on more nodes was not reconciled")
	}
}

// The cache keeps of a workload what pools are carved from, not its containers.
func TestCachedWorkloadsKeepTheirPoolsInputsOnly(t *testing.T) {
	cj := &batchv1.CronJob{ObjectMeta: metav1.ObjectMeta{Name: "c", ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kubectl"}}}}
	cj.Spec.JobTemplate.Spec.Template = template(nil)
	cj.Spec.JobTemplate.Spec.Template.Spec.Containers = []corev1.Container{{Name: "c", Image: strings.Repeat("x", 100)}}
	cj.Spec.JobTemplate.Spec.Parallelism = ptr.To[int32](2)
	before := builtinKinds[apppool.KindCronJob].read(cj.DeepCopy())
	out, _ := slimWorkload(cj)
	slim := out.(*batchv1.CronJob)
	after := builtinKinds[apppool.KindCronJob].read(slim)
	if len(slim.Spec.JobTemplate.Spec.Template.Spec.Containers) != 0 || slim.ManagedFields != nil {
		t.Errorf("containers or managed fields kept: %+v", slim)
	}
	if after.replicas != before.replicas || after.template[v1.AnnotationSubnet] != before.template[v1.AnnotationSubnet] {
		t.Errorf("slimming changed what a pool is carved from: %+v, was %+v", after, before)
	}
}
