package controller

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/discovery"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/core/apppool"
)

// Workloads of kinds that are not built in (an operator's StatefulSet-like kind, an Argo
// Rollout over ReplicaSets, say): the controller cannot read their pod templates, and is
// not allowed to list or watch arbitrary kinds. It learns of one from its pods (a
// metadata-only pod watch, slimmed to the pods of such workloads that name a Subnet) or
// from the ReplicaSets or Jobs it controls, reads the pool's annotations from the newest
// of those (else of its pods), its replicas from its scale subresource (get */scale,
// nothing else of the kind), and whether it is gone from that same read. It looks again
// every othersRecheck, and whenever one of its pods, ReplicaSets or Jobs comes or goes.
// +kubebuilder:rbac:groups="",resources=pods,verbs=list;watch
// +kubebuilder:rbac:groups=*,resources=*/scale,verbs=get

// othersRecheck is how often a workload of another kind is read again: scaling it
// changes nothing the controller watches until its pods change.
const othersRecheck = 30 * time.Second

// indexPodWorkload indexes cached pod metadata by the workload (apppool.Workload.String)
// of another kind that controls the pod; indexAboveWorkload indexes ReplicaSets and Jobs
// by the workload of another kind that controls them.
const (
	indexPodWorkload   = "underpool.workload"
	indexAboveWorkload = "underpool.above"
)

// otherKinds reads the workloads of kinds that are not built in.
type otherKinds struct {
	// cache holds pod metadata indexed by indexPodWorkload, ReplicaSets and Jobs by
	// indexAboveWorkload
	cache client.Reader
	scale scaleReader
}

// scaleReader reads a workload's scale subresource.
type scaleReader interface {
	// Scale returns spec.replicas and status.selector of the workload's scale
	// subresource, and the kind's version for events; NotFound when the workload is gone,
	// a *noScaleError when its kind has no scale subresource, a NoKindMatch error when
	// the API serves no such kind.
	Scale(ctx context.Context, w apppool.Workload) (replicas int32, selector string, gvk schema.GroupVersionKind, err error)
}

// noScaleError: the kind has no scale subresource, so its replicas cannot be read.
type noScaleError struct{ kind string }

func (e *noScaleError) Error() string {
	return fmt.Sprintf("%s has no scale subresource, so the size of its application pool cannot follow its replicas: name pools with annotation %s instead",
		e.kind, v1.AnnotationIPPool)
}

func (o *otherKinds) read(ctx context.Context, w apppool.Workload) (*appWorkload, error) {
	src, err := o.template(ctx, w)
	if err != nil {
		return nil, err
	}
	replicas, selectorText, gvk, err := o.scale.Scale(ctx, w)
	if meta.IsNoMatchError(err) && src == nil {
		// the kind is no longer served (its CRD deleted) and nothing of it is left: gone
		return nil, apierrors.NewNotFound(schema.GroupResource{Group: w.GroupKind().Group, Resource: w.GroupKind().Kind}, w.Name)
	}
	if apierrors.IsNotFound(err) {
		return nil, err
	}
	a := &appWorkload{obj: eventObject(w, gvk, src), replicas: replicas, recheck: othersRecheck}
	if err != nil {
		if gvk.Empty() {
			return nil, fmt.Errorf("reading the scale of %s: %w", w, err)
		}
		return a, err // reported on the workload
	}
	if selectorText != "" {
		if a.selector, err = metav1.ParseToLabelSelector(selectorText); err != nil {
			return a, fmt.Errorf("%s: status.selector %q of its scale subresource: %w", w, selectorText, err)
		}
	}
	if src != nil {
		a.template = src.annotations // none: nothing to carve from; the pools stay as they are
	}
	return a, nil
}

// templateOf is what the controller knows of a workload of another kind's pod template:
// its annotations, and the workload's UID (from the controller reference).
type templateOf struct {
	annotations map[string]string
	uid         types.UID
	created     metav1.Time
}

// template reads the workload's pod template annotations from the newest ReplicaSet or
// Job it controls (an Argo Rollout's ReplicaSets, say), else from its newest pod not being
// deleted; nil when it has neither.
func (o *otherKinds) template(ctx context.Context, w apppool.Workload) (*templateOf, error) {
	var newest *templateOf
	consider := func(obj metav1.Object, annotations map[string]string) {
		if obj.GetDeletionTimestamp() != nil {
			return
		}
		if t := obj.GetCreationTimestamp(); newest == nil || newest.created.Before(&t) {
			newest = &templateOf{annotations: annotations, created: t}
			if ref := metav1.GetControllerOfNoCopy(obj); ref != nil {
				newest.uid = ref.UID
			}
		}
	}
	for _, kind := range []string{apppool.KindReplicaSet, apppool.KindJob} {
		list := intermediateList(kind)
		if err := o.cache.List(ctx, list, client.InNamespace(w.Namespace), client.MatchingFields{indexAboveWorkload: w.String()}); err != nil {
			return nil, err
		}
		items, err := meta.ExtractList(list)
		if err != nil {
			return nil, err
		}
		for _, item := range items {
			if obj, ok := item.(client.Object); ok {
				consider(obj, builtinKinds[kind].read(obj).template)
			}
		}
	}
	if newest != nil {
		return newest, nil
	}
	pods := &metav1.PartialObjectMetadataList{}
	pods.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("PodList"))
	if err := o.cache.List(ctx, pods, client.InNamespace(w.Namespace), client.MatchingFields{indexPodWorkload: w.String()}); err != nil {
		return nil, err
	}
	for i := range pods.Items {
		consider(&pods.Items[i], pods.Items[i].Annotations)
	}
	return newest, nil
}

func intermediateList(kind string) client.ObjectList {
	if kind == apppool.KindJob {
		return &batchv1.JobList{}
	}
	return &appsv1.ReplicaSetList{}
}

// eventObject is the workload as events name it: its kind, name and (from the controller
// references to it) UID; no read of the object itself is allowed.
func eventObject(w apppool.Workload, gvk schema.GroupVersionKind, src *templateOf) client.Object {
	obj := &metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{Namespace: w.Namespace, Name: w.Name}}
	obj.SetGroupVersionKind(gvk)
	if src != nil {
		obj.UID = src.uid
	}
	return obj
}

// otherKindOf is the workload of a kind not built in that controls the pod, when the pod
// names a Subnet (the subnet or subnets annotation).
func otherKindOf(pod metav1.Object) (apppool.Workload, bool) {
	a := pod.GetAnnotations()
	if a[v1.AnnotationSubnet] == "" && a[v1.AnnotationSubnets] == "" {
		return apppool.Workload{}, false
	}
	ref := metav1.GetControllerOfNoCopy(pod)
	if ref == nil {
		return apppool.Workload{}, false
	}
	w := apppool.Workload{Kind: apppool.KindOf(ref.APIVersion, ref.Kind), Namespace: pod.GetNamespace(), Name: ref.Name}
	return w, !w.Builtin()
}

// otherKindAbove is the workload of a kind not built in that controls a ReplicaSet or Job
// whose pod template names a Subnet: its pods find it through that object
// (apppool.WorkloadOf), and the controller learns of it from that object.
func otherKindAbove(obj client.Object) (apppool.Workload, bool) {
	var k appKind
	switch obj.(type) {
	case *appsv1.ReplicaSet:
		k = builtinKinds[apppool.KindReplicaSet]
	case *batchv1.Job:
		k = builtinKinds[apppool.KindJob]
	default:
		return apppool.Workload{}, false
	}
	a := k.read(obj)
	if a.above == nil || (a.template[v1.AnnotationSubnet] == "" && a.template[v1.AnnotationSubnets] == "") {
		return apppool.Workload{}, false
	}
	w := apppool.Workload{Kind: apppool.KindOf(a.above.APIVersion, a.above.Kind), Namespace: obj.GetNamespace(), Name: a.above.Name}
	return w, !w.Builtin()
}

// aboveWorkloadIndex is indexAboveWorkload's function.
func aboveWorkloadIndex(obj client.Object) []string {
	if w, ok := otherKindAbove(obj); ok {
		return []string{w.String()}
	}
	return nil
}

// enqueueOtherKindAbove maps a ReplicaSet or Job to the workload of another kind above it.
func enqueueOtherKindAbove() handler.EventHandler {
	return handler.EnqueueRequestsFromMapFunc(func(_ context.Context, obj client.Object) []reconcile.Request {
		if w, ok := otherKindAbove(obj); ok {
			return []reconcile.Request{requestFor(w)}
		}
		return nil
	})
}

// podWorkloadIndex is indexPodWorkload's function.
func podWorkloadIndex(obj client.Object) []string {
	if w, ok := otherKindOf(obj); ok {
		return []string{w.String()}
	}
	return nil
}

// appPoolAnnotations are what the controller keeps of a pod of another kind's workload.
var appPoolAnnotations = []string{v1.AnnotationSubnet, v1.AnnotationSubnets, v1.AnnotationIPNumber, v1.AnnotationReclaim}

// slimPod keeps of a pod's metadata what the pools of other kinds need: for the pods of
// such workloads that name a Subnet, their controller and the application pool
// annotations; of every other pod its name alone. The controller caches every pod.
func slimPod(obj any) (any, error) {
	p, ok := obj.(*metav1.PartialObjectMetadata)
	if !ok {
		return obj, nil
	}
	slim := &metav1.PartialObjectMetadata{TypeMeta: p.TypeMeta, ObjectMeta: metav1.ObjectMeta{Namespace: p.Namespace, Name: p.Name,
		UID: p.UID, ResourceVersion: p.ResourceVersion, CreationTimestamp: p.CreationTimestamp, DeletionTimestamp: p.DeletionTimestamp}}
	if _, ok := otherKindOf(p); ok {
		slim.OwnerReferences = []metav1.OwnerReference{*metav1.GetControllerOfNoCopy(p)}
		slim.Annotations = map[string]string{}
		for _, k := range appPoolAnnotations {
			if v, ok := p.Annotations[k]; ok {
				slim.Annotations[k] = v
			}
		}
	}
	return slim, nil
}

// podMetadata is the object of the metadata-only pod watch.
func podMetadata() *metav1.PartialObjectMetadata {
	p := &metav1.PartialObjectMetadata{}
	p.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Pod"))
	return p
}

// enqueueOtherKind maps a pod of another kind's workload to that workload.
func enqueueOtherKind() handler.EventHandler {
	return handler.EnqueueRequestsFromMapFunc(func(_ context.Context, obj client.Object) []reconcile.Request {
		if w, ok := otherKindOf(obj); ok {
			return []reconcile.Request{requestFor(w)}
		}
		return nil
	})
}

// podsComeAndGo lets through pod creations and deletions: the kubelet updates a pod's
// status many times, none of which changes its workload's pool.
var podsComeAndGo = predicate.Funcs{
	UpdateFunc:  func(event.UpdateEvent) bool { return false },
	GenericFunc: func(event.GenericEvent) bool { return false },
}

// poolsOfOtherKinds lets through the creation (at start, too: the informer lists them) and
// deletion of pools of other kinds: after a restart, a workload whose pods are all gone
// is still read until it is gone, and its pools with it.
var poolsOfOtherKinds = predicate.Funcs{
	CreateFunc:  func(e event.CreateEvent) bool { return ownedByOtherKind(e.Object) },
	UpdateFunc:  func(event.UpdateEvent) bool { return false },
	DeleteFunc:  func(e event.DeleteEvent) bool { return ownedByOtherKind(e.Object) },
	GenericFunc: func(event.GenericEvent) bool { return false },
}

func ownedByOtherKind(obj client.Object) bool {
	pool, ok := obj.(*v1.IPPool)
	if !ok {
		return false
	}
	w, ok := apppool.OwnerOf(pool)
	return ok && !w.Builtin()
}

// apiScales reads scale subresources from the API: the kind's resource from the REST
// mapper, whether it has a scale subresource from discovery.
type apiScales struct {
	c         client.Client
	mapper    meta.RESTMapper
	discovery discovery.DiscoveryInterface
}

func (s *apiScales) Scale(ctx context.Context, w apppool.Workload) (int32, string, schema.GroupVersionKind, error) {
	mapping, err := s.mapper.RESTMapping(w.GroupKind())
	if err != nil {
		return 0, "", schema.GroupVersionKind{}, err
	}
	gvk := mapping.GroupVersionKind
	resources, err := s.discovery.ServerResourcesForGroupVersion(gvk.GroupVersion().String())
	if err != nil {
		return 0, "", gvk, fmt.Errorf("discovering the resources of %s: %w", gvk.GroupVersion(), err)
	}
	if !slices.ContainsFunc(resources.APIResources, func(r metav1.APIResource) bool { return r.Name == mapping.Resource.Resource+"/scale" }) {
		return 0, "", gvk, &noScaleError{kind: w.Kind}
	}
	obj := &unstructured.Unstructured{}
	obj.SetGroupVersionKind(gvk)
	obj.SetName(w.Name)
	if mapping.Scope.Name() == meta.RESTScopeNameNamespace {
		obj.SetNamespace(w.Namespace)
	}
	scale := &unstructured.Unstructured{}
	scale.SetGroupVersionKind(autoscalingv1.SchemeGroupVersion.WithKind("Scale"))
	if err := s.c.SubResource("scale").Get(ctx, obj, scale); err != nil {
		return 0, "", gvk, err
	}
	replicas, _, err := unstructured.NestedInt64(scale.Object, "spec", "replicas")
	if err != nil {
		return 0, "", gvk, fmt.Errorf("%s: spec.replicas of its scale: %w", w, err)
	}
	selector, _, _ := unstructured.NestedString(scale.Object, "status", "selector")
	if replicas < 0 || replicas > int64(v1.MaxAppPoolIPNumber) {
		return 0, "", gvk, errors.New(w.String() + fmt.Sprintf(": %d replicas, more than an application pool may hold (%d)", replicas, v1.MaxAppPoolIPNumber))
	}
	return int32(replicas), selector, gvk, nil
}
