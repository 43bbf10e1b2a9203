package simulation

import (
	"context"
	"fmt"
	"reflect"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/ipamd/store"
)

// contents is every object the actors read, as the API held them at one moment. It is
// read from the API once per change and never modified: caches and the checker share it.
type contents struct {
	pools      []v1.IPPool
	allocs     []v1.PoolAllocation // only the controller's cache and the checker read them
	eps        []v1.Endpoint
	pods       []corev1.Pod
	nodes      []corev1.Node
	namespaces []corev1.Namespace
	sets       []appsv1.StatefulSet
}

// contents returns the API's objects now (sorted by namespace and name, as the fake
// client lists them), read again only when something was written since.
func (s *sim) contents() *contents {
	if s.current != nil && s.currentAt == s.writes {
		return s.current
	}
	c := &contents{}
	var pools v1.IPPoolList
	var allocs v1.PoolAllocationList
	var eps v1.EndpointList
	var pods corev1.PodList
	var nodes corev1.NodeList
	var nss corev1.NamespaceList
	var sets appsv1.StatefulSetList
	for _, l := range []client.ObjectList{&pools, &allocs, &eps, &pods, &nodes, &nss, &sets} {
		if err := s.api.List(context.Background(), l); err != nil {
			panic(fmt.Sprintf("simulation: listing the API: %v", err))
		}
	}
	c.pools, c.eps, c.pods, c.nodes, c.namespaces, c.sets = pools.Items, eps.Items, pods.Items, nodes.Items, nss.Items, sets.Items
	c.allocs = allocs.Items
	s.current, s.currentAt = c, s.writes
	return c
}

// snapshotReader reads one contents the way an informer cache answers: Get by key, List
// by type with the field indexes ipamd registers, copies out.
type snapshotReader struct{ c *contents }

func (r snapshotReader) items(obj runtime.Object) (reflect.Value, bool) {
	switch o := obj.(type) {
	case *v1.IPPool, *v1.IPPoolList:
		return reflect.ValueOf(r.c.pools), true
	case *v1.PoolAllocation, *v1.PoolAllocationList:
		return reflect.ValueOf(r.c.allocs), true
	case *v1.Endpoint, *v1.EndpointList:
		return reflect.ValueOf(r.c.eps), true
	case *corev1.Pod, *corev1.PodList:
		return reflect.ValueOf(r.c.pods), true
	case *corev1.Node, *corev1.NodeList:
		return reflect.ValueOf(r.c.nodes), true
	case *corev1.Namespace, *corev1.NamespaceList:
		return reflect.ValueOf(r.c.namespaces), true
	case *appsv1.StatefulSet, *appsv1.StatefulSetList:
		return reflect.ValueOf(r.c.sets), true
	case *metav1.PartialObjectMetadata:
		if o.GroupVersionKind().Kind == "Namespace" {
			return reflect.ValueOf(r.c.namespaces), true
		}
	}
	return reflect.Value{}, false
}

func (r snapshotReader) Get(_ context.Context, key client.ObjectKey, obj client.Object, _ ...client.GetOption) error {
	items, ok := r.items(obj)
	if ok {
		for i := range items.Len() {
			item := items.Index(i).Addr().Interface().(client.Object)
			if item.GetNamespace() != key.Namespace || item.GetName() != key.Name {
				continue
			}
			if partial, ok := obj.(*metav1.PartialObjectMetadata); ok {
				gvk := partial.GroupVersionKind()
				partial.ObjectMeta = *item.(metav1.ObjectMetaAccessor).GetObjectMeta().(*metav1.ObjectMeta).DeepCopy()
				partial.SetGroupVersionKind(gvk)
				return nil
			}
			reflect.ValueOf(obj).Elem().Set(reflect.ValueOf(item.DeepCopyObject()).Elem())
			return nil
		}
	}
	return apierrors.NewNotFound(schema.GroupResource{Resource: kindOf(obj)}, key.Name)
}

func (r snapshotReader) List(_ context.Context, list client.ObjectList, opts ...client.ListOption) error {
	var lo client.ListOptions
	lo.ApplyOptions(opts)
	items, ok := r.items(list)
	var out []runtime.Object
	if ok {
		for i := range items.Len() {
			item := items.Index(i).Addr().Interface().(client.Object)
			if lo.Namespace != "" && item.GetNamespace() != lo.Namespace {
				continue
			}
			if lo.FieldSelector != nil && !matchesIndexes(item, lo) {
				continue
			}
			out = append(out, item.DeepCopyObject())
		}
	}
	return meta.SetList(list, out)
}

// matchesIndexes applies the field selectors the store lists Endpoints by.
func matchesIndexes(obj client.Object, lo client.ListOptions) bool {
	ep, ok := obj.(*v1.Endpoint)
	if !ok {
		return true
	}
	if node, ok := lo.FieldSelector.RequiresExactMatch(store.IndexEndpointNode); ok && ep.Status.Node != node {
		return false
	}
	if id, ok := lo.FieldSelector.RequiresExactMatch(store.IndexEndpointContainerID); ok {
		for _, itf := range ep.Status.Interfaces {
			if itf.ContainerID == id {
				return true
			}
		}
		return false
	}
	return true
}

// allocation returns the PoolAllocation named as the pool, nil when there is none.
func (c *contents) allocation(pool string) *v1.PoolAllocation {
	for i := range c.allocs {
		if c.allocs[i].Name == pool {
			return &c.allocs[i]
		}
	}
	return nil
}

// stateOf is the allocation state of pool as the API holds it: empty when its
// PoolAllocation is missing or an earlier incarnation's (v1.StateOf).
func (c *contents) stateOf(pool *v1.IPPool) v1.AllocationState {
	return v1.StateOf(pool, c.allocation(pool.Name))
}
