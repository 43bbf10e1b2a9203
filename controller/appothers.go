package controller

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	autoscalingv1 "k8s.io/api/autoscaling/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/core/apppool"
)

// Workloads of kinds that are not built in (an operator's StatefulSet-like kind, say):
// the controller cannot read their pod templates, and is not allowed to list or watch
// arbitrary kinds. It learns of one from its pods (a metadata-only pod watch, slimmed to
// the pods of such workloads that name a Subnet), reads the pool's annotations from its
// newest pod, its replicas from its scale subresource (get */scale, nothing else of the
// kind), and whether it is gone from that same read. It looks again every
// othersRecheck, and whenever one of its pods comes or goes.
// +kubebuilder:rbac:groups="",resources=pods,verbs=list;watch
// +kubebuilder:rbac:groups=*,resources=*/scale,verbs=get

// othersRecheck is how often a workload of another kind is read again: scaling it
// changes nothing the controller watches until its pods change.
const othersRecheck = 30 * time.Second

// indexPodWorkload indexes cached pod metadata by the workload (apppool.Workload.String)
// of another kind that controls the pod.
const indexPodWorkload = "underpool.workload"

// otherKinds reads the workloads of kinds that are not built in.
type otherKinds struct {
	pods  client.Reader // the cache of pod metadata, indexed by indexPodWorkload
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
	pod, err := o.newestPod(ctx, w)
	if err != nil {
		return nil, err
	}
	replicas, selectorText, gvk, err := o.scale.Scale(ctx, w)
	if meta.IsNoMatchError(err) && pod == nil {
		// the kind is no longer served (its CRD deleted) and no pod of it is left: gone
		return nil, apierrors.NewNotFound(schema.GroupResource{Group: w.GroupKind().Group, Resource: w.GroupKind().Kind}, w.Name)
	}
	if apierrors.IsNotFound(err) {
		return nil, err
	}
	a := &appWorkload{obj: eventObject(w, gvk, pod), replicas: replicas, recheck: othersRecheck}
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
	if pod != nil {
		a.template = pod.Annotations // no pod: nothing to carve from; the pools stay as they are
	}
	return a, nil
}

// newestPod is the workload's newest pod not being deleted, nil when it has none: its
// annotations are the workload's pod template's as the controller can know them.
func (o *otherKinds) newestPod(ctx context.Context, w apppool.Workload) (*metav1.PartialObjectMetadata, error) {
	list := &metav1.PartialObjectMetadataList{}
	list.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("PodList"))
	if err := o.pods.List(ctx, list, client.InNamespace(w.Namespace), client.MatchingFields{indexPodWorkload: w.String()}); err != nil {
		return nil, err
	}
	var newest *metav1.PartialObjectMetadata
	for i := range list.Items {
		p := &list.Items[i]
		if p.DeletionTimestamp == nil && (newest == nil || newest.CreationTimestamp.Before(&p.CreationTimestamp)) {
			newest = p
		}
	}
	return newest, nil
}

// eventObject is the workload as events name it: its kind, name and (from its pods'
// owner reference) UID; no read of the object itself is allowed.
func eventObject(w apppool.Workload, gvk schema.GroupVersionKind, pod *metav1.PartialObjectMetadata) client.Object {
	obj := &metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{Namespace: w.Namespace, Name: w.Name}}
	obj.SetGroupVersionKind(gvk)
	if pod != nil {
		if ref := metav1.GetControllerOf(pod); ref != nil {
			obj.UID = ref.UID
		}
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
