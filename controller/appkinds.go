package controller

import (
	"maps"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	"github.com/underpool/underpool/core/apppool"
)

// +kubebuilder:rbac:groups=apps,resources=deployments;statefulsets;daemonsets;replicasets,verbs=get;list;watch
// +kubebuilder:rbac:groups=batch,resources=jobs;cronjobs,verbs=get;list;watch

// appWorkload is what an application pool is carved from, read from a workload of any kind.
type appWorkload struct {
	obj      client.Object         // what events are about
	template map[string]string     // the pod template's annotations
	replicas int32                 // the pods it wants: the pool's size before ippool-ip-number
	selector *metav1.LabelSelector // the pool's podAffinity (nil: none)
	// above is the controller of a ReplicaSet or Job: its pods use that controller's pool
	// (apppool.WorkloadOf), so this one carves none
	above *metav1.OwnerReference
	// recheck is how soon to read the workload again though nothing was heard of it: a
	// kind not built in is not watched (appothers.go)
	recheck time.Duration
}

// appKind reads one built-in kind: a new object to read into, and what a pool is carved
// from in it.
type appKind struct {
	newObj func() client.Object
	read   func(client.Object) appWorkload
}

// builtinKinds are the kinds whose pod templates the controller reads itself.
var builtinKinds = map[string]appKind{
	apppool.KindDeployment: {func() client.Object { return &appsv1.Deployment{} }, func(o client.Object) appWorkload {
		d := o.(*appsv1.Deployment)
		return appWorkload{obj: d, template: d.Spec.Template.Annotations, replicas: orOne(d.Spec.Replicas), selector: d.Spec.Selector}
	}},
	apppool.KindStatefulSet: {func() client.Object { return &appsv1.StatefulSet{} }, func(o client.Object) appWorkload {
		s := o.(*appsv1.StatefulSet)
		return appWorkload{obj: s, template: s.Spec.Template.Annotations, replicas: orOne(s.Spec.Replicas), selector: s.Spec.Selector}
	}},
	// a DaemonSet wants a pod on each node it runs on: its status counts them
	apppool.KindDaemonSet: {func() client.Object { return &appsv1.DaemonSet{} }, func(o client.Object) appWorkload {
		d := o.(*appsv1.DaemonSet)
		return appWorkload{obj: d, template: d.Spec.Template.Annotations, replicas: d.Status.DesiredNumberScheduled, selector: d.Spec.Selector}
	}},
	apppool.KindReplicaSet: {func() client.Object { return &appsv1.ReplicaSet{} }, func(o client.Object) appWorkload {
		s := o.(*appsv1.ReplicaSet)
		return appWorkload{obj: s, template: s.Spec.Template.Annotations, replicas: orOne(s.Spec.Replicas), selector: s.Spec.Selector,
			above: metav1.GetControllerOf(s)}
	}},
	// a Job runs spec.parallelism pods at once
	apppool.KindJob: {func() client.Object { return &batchv1.Job{} }, func(o client.Object) appWorkload {
		j := o.(*batchv1.Job)
		return appWorkload{obj: j, template: j.Spec.Template.Annotations, replicas: orOne(j.Spec.Parallelism), selector: j.Spec.Selector,
			above: metav1.GetControllerOf(j)}
	}},
	// one pool for the CronJob, shared by its Jobs' pods: sized to one Job's parallelism
	// (Jobs that overlap need ippool-ip-number "+N"); its Jobs' pods share no selector
	// but the template's labels
	apppool.KindCronJob: {func() client.Object { return &batchv1.CronJob{} }, func(o client.Object) appWorkload {
		c := o.(*batchv1.CronJob)
		t := &c.Spec.JobTemplate.Spec
		var selector *metav1.LabelSelector
		if len(t.Template.Labels) > 0 {
			selector = &metav1.LabelSelector{MatchLabels: maps.Clone(t.Template.Labels)}
		}
		return appWorkload{obj: c, template: t.Template.Annotations, replicas: orOne(t.Parallelism), selector: selector}
	}},
}

// orOne is an optional count that defaults to one (replicas, parallelism).
func orOne(p *int32) int32 {
	if p == nil {
		return 1
	}
	return *p
}

// sizeOrTemplateChanged lets through what can change a workload's pool: its creation and
// deletion, and updates of its template's annotations, its replicas or the controller
// above it. A Job's or DaemonSet's status changes with every pod; each reconcile reads
// every pool from the API.
func sizeOrTemplateChanged(k appKind) predicate.Funcs {
	return predicate.Funcs{
		UpdateFunc: func(e event.UpdateEvent) bool {
			o, n := k.read(e.ObjectOld), k.read(e.ObjectNew)
			return o.replicas != n.replicas || !maps.Equal(o.template, n.template) || (o.above == nil) != (n.above == nil) ||
				n.obj.GetDeletionTimestamp() != nil
		},
		GenericFunc: func(event.GenericEvent) bool { return false },
	}
}

// slimWorkload keeps of a cached workload what pools are carved from: the controller
// caches every workload of the cluster, and their pod templates' containers, volumes and
// managed fields are most of their size.
func slimWorkload(obj any) (any, error) {
	if o, ok := obj.(metav1.Object); ok {
		o.SetManagedFields(nil)
	}
	switch w := obj.(type) {
	case *appsv1.Deployment:
		w.Spec.Template.Spec = corev1.PodSpec{}
	case *appsv1.StatefulSet:
		w.Spec.Template.Spec = corev1.PodSpec{}
		w.Spec.VolumeClaimTemplates = nil
	case *appsv1.DaemonSet:
		w.Spec.Template.Spec = corev1.PodSpec{}
	case *appsv1.ReplicaSet:
		w.Spec.Template.Spec = corev1.PodSpec{}
	case *batchv1.Job:
		w.Spec.Template.Spec = corev1.PodSpec{}
	case *batchv1.CronJob:
		w.Spec.JobTemplate.Spec.Template.Spec = corev1.PodSpec{}
	}
	return obj, nil
}
