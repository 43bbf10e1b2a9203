// Package cluster is what ipamd and the controller read of the cluster for the service:
// the service.Cluster implementation over controller-runtime readers. Reads come from the
// informer cache, and from the uncached API reader where a decision needs the truth (a pod
// about to be recycled, a StatefulSet's wanted ordinals, the controller of a pod's Job).
package cluster

import (
	"context"
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/core/apppool"
	"github.com/underpool/underpool/core/recycle"
	"github.com/underpool/underpool/ipamd/service"
)

// cluster implements service.Cluster over informer caches with API fallbacks.
type cluster struct {
	node  string
	cache client.Reader
	api   client.Reader
	// podsCached: cache holds pods; without, PodCached has nothing to offer and recycling
	// reads each pod once, fresh
	podsCached bool
}

// New returns ipamd's view of the cluster for node: reads from cache, and from the
// uncached api reader where a decision needs the truth.
func New(node string, cache, api client.Reader) service.Cluster {
	return &cluster{node: node, cache: cache, api: api, podsCached: true}
}

// NewUncached is the view of a process that caches no pods (the controller recycling
// gone nodes' Endpoints): every read goes to api.
func NewUncached(api client.Reader) service.Cluster {
	return &cluster{cache: api, api: api}
}

func (c *cluster) Pod(ctx context.Context, namespace, name, uid string) (*corev1.Pod, error) {
	pod := &corev1.Pod{}
	err := c.cache.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, pod)
	if err == nil && (uid == "" || string(pod.UID) == uid) {
		return pod, nil
	}
	if err != nil && !apierrors.IsNotFound(err) {
		return nil, err
	}
	return c.PodFresh(ctx, namespace, name)
}

func (c *cluster) PodCached(ctx context.Context, namespace, name string) *corev1.Pod {
	if !c.podsCached {
		return nil
	}
	pod := &corev1.Pod{}
	if err := c.cache.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, pod); err != nil {
		return nil
	}
	return pod
}

func (c *cluster) PodFresh(ctx context.Context, namespace, name string) (*corev1.Pod, error) {
	pod := &corev1.Pod{}
	if err := c.api.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, pod); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, nil
		}
		return nil, err
	}
	return pod, nil
}

// Namespace reads the namespace's metadata (its labels and annotations are all pool
// selection looks at): the informer keeps metadata only, so a cluster of many namespaces
// costs a node little.
func (c *cluster) Namespace(ctx context.Context, name string) (*corev1.Namespace, error) {
	meta := NamespaceMetadata()
	err := c.cache.Get(ctx, client.ObjectKey{Name: name}, meta)
	if apierrors.IsNotFound(err) { // a namespace created moments ago may not be cached yet
		err = c.api.Get(ctx, client.ObjectKey{Name: name}, meta)
	}
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return &corev1.Namespace{TypeMeta: meta.TypeMeta, ObjectMeta: meta.ObjectMeta}, nil
}

// NamespaceMetadata is the object the Namespace informer caches: metadata only.
func NamespaceMetadata() *metav1.PartialObjectMetadata {
	meta := &metav1.PartialObjectMetadata{}
	meta.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Namespace"))
	return meta
}

func (c *cluster) Node(ctx context.Context) (*corev1.Node, error) {
	node := &corev1.Node{}
	err := c.cache.Get(ctx, client.ObjectKey{Name: c.node}, node)
	if apierrors.IsNotFound(err) { // registered moments ago, or not at all
		err = c.api.Get(ctx, client.ObjectKey{Name: c.node}, node)
	}
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return node, nil
}

func (c *cluster) Pools(ctx context.Context) ([]v1.IPPool, error) {
	var list v1.IPPoolList
	if err := c.cache.List(ctx, &list, client.UnsafeDisableDeepCopy); err != nil {
		return nil, err
	}
	return list.Items, nil
}

func (c *cluster) Subnets(ctx context.Context) ([]v1.Subnet, error) {
	var list v1.SubnetList
	if err := c.cache.List(ctx, &list, client.UnsafeDisableDeepCopy); err != nil {
		return nil, err
	}
	return list.Items, nil
}

func (c *cluster) StatefulSetOrdinals(ctx context.Context, namespace, name string) (recycle.Ordinals, bool, error) {
	sts := &appsv1.StatefulSet{}
	if err := c.api.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, sts); err != nil {
		if apierrors.IsNotFound(err) {
			return recycle.Ordinals{}, false, nil
		}
		return recycle.Ordinals{}, false, err
	}
	if sts.DeletionTimestamp != nil {
		return recycle.Ordinals{}, false, nil
	}
	return recycle.OrdinalsOf(sts), true, nil
}

// ControllerOf reads only the object's metadata: its controller reference is all the
// workload lookup needs.
func (c *cluster) ControllerOf(ctx context.Context, kind, namespace, name string) (*metav1.OwnerReference, error) {
	meta := &metav1.PartialObjectMetadata{}
	switch kind {
	case apppool.KindReplicaSet:
		meta.SetGroupVersionKind(appsv1.SchemeGroupVersion.WithKind(kind))
	case apppool.KindJob:
		meta.SetGroupVersionKind(batchv1.SchemeGroupVersion.WithKind(kind))
	default:
		return nil, fmt.Errorf("reading the controller of a %s: only a ReplicaSet's or a Job's is read", kind)
	}
	if err := c.api.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, meta); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, nil
		}
		return nil, err
	}
	return metav1.GetControllerOf(meta), nil
}
