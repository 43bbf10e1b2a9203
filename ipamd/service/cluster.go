package service

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/core/recycle"
)

// Cluster is ipamd's read view of the objects pool selection and GC look at. Reads come
// from informers; Pod falls back to the API when the cache has no copy of the asked
// incarnation yet, since an ADD can arrive moments after the pod was scheduled.
type Cluster interface {
	// Pod returns the pod named namespace/name (preferring the incarnation uid when given),
	// or nil when the API has no such pod.
	Pod(ctx context.Context, namespace, name, uid string) (*corev1.Pod, error)
	// PodCached returns the informer's copy of a pod on this node, or nil (always nil
	// where pods are not cached).
	PodCached(ctx context.Context, namespace, name string) *corev1.Pod
	// PodFresh reads the pod from the API, bypassing caches: GC decides on it.
	PodFresh(ctx context.Context, namespace, name string) (*corev1.Pod, error)
	Namespace(ctx context.Context, name string) (*corev1.Namespace, error)
	// Node returns the node ipamd serves, or nil when it has no Node object.
	Node(ctx context.Context) (*corev1.Node, error)
	// Pools lists every IPPool; callers must not modify them.
	Pools(ctx context.Context) ([]v1.IPPool, error)
	// Subnets lists every Subnet; callers must not modify them.
	Subnets(ctx context.Context) ([]v1.Subnet, error)
	// StatefulSetOrdinals reads a StatefulSet from the API and returns the ordinals it
	// wants now; ok is false when the set is gone (or being deleted).
	StatefulSetOrdinals(ctx context.Context, namespace, name string) (ordinals recycle.Ordinals, ok bool, err error)
	// ControllerOf reads a ReplicaSet or Job (kind) by name from the API, uncached, and
	// returns its controller reference: nil when it has none or is gone. Only pods that
	// ask for an application pool need it (apppool.Intermediate), so a node caches no
	// ReplicaSet or Job of the cluster's.
	ControllerOf(ctx context.Context, kind, namespace, name string) (*metav1.OwnerReference, error)
}
