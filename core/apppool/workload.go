package apppool

import (
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// The built-in workload kinds, named by their Kind alone. Any other controller is named
// "Kind.group" (KindOf), so two kinds of one name in different groups never share a pool.
const (
	KindDeployment  = "Deployment"
	KindStatefulSet = "StatefulSet"
	KindDaemonSet   = "DaemonSet"
	KindReplicaSet  = "ReplicaSet"
	KindJob         = "Job"
	KindCronJob     = "CronJob"
)

// builtinGroups is the API group of each built-in kind.
var builtinGroups = map[string]string{
	KindDeployment: "apps", KindStatefulSet: "apps", KindDaemonSet: "apps", KindReplicaSet: "apps",
	KindJob: "batch", KindCronJob: "batch",
}

// KindOf names the kind of an owner reference as Workload.Kind does: a built-in kind by
// its name, any other as "Kind.group" ("Kind" alone in the core group, e.g.
// ReplicationController). An empty apiVersion is taken for the built-in group (unit
// tests; the apiserver never stores an owner reference without one).
func KindOf(apiVersion, kind string) string {
	group := ""
	if gv, err := schema.ParseGroupVersion(apiVersion); err == nil {
		group = gv.Group
	}
	if g, ok := builtinGroups[kind]; ok && (apiVersion == "" || g == group) {
		return kind
	}
	if group == "" {
		return kind
	}
	return kind + "." + group
}

// GroupKind is the API group and kind of the workload.
func (w Workload) GroupKind() schema.GroupKind {
	if g, ok := builtinGroups[w.Kind]; ok {
		return schema.GroupKind{Group: g, Kind: w.Kind}
	}
	kind, group, _ := strings.Cut(w.Kind, ".")
	return schema.GroupKind{Group: group, Kind: kind}
}

// Builtin says whether the workload is of a kind whose pod template the controller reads
// itself; any other is sized through its scale subresource.
func (w Workload) Builtin() bool {
	_, ok := builtinGroups[w.Kind]
	return ok
}

// Intermediate names the ReplicaSet or Job that controls the pod when the workload may
// be above it: a Deployment's or another controller's ReplicaSet, a CronJob's or another
// controller's Job. The pod names only that object; the caller reads its controller
// reference (one uncached read by name) and passes it to WorkloadOf. A ReplicaSet named
// after the pod's pod-template-hash label is a Deployment's and needs no read.
func Intermediate(pod *corev1.Pod) (kind, name string, ok bool) {
	ref := metav1.GetControllerOf(pod)
	if ref == nil {
		return "", "", false
	}
	switch KindOf(ref.APIVersion, ref.Kind) {
	case KindReplicaSet:
		if _, isDeployment := deploymentOf(pod, ref); isDeployment {
			return "", "", false
		}
		return KindReplicaSet, ref.Name, true
	case KindJob:
		return KindJob, ref.Name, true
	}
	return "", "", false
}

// WorkloadOf finds the workload whose application pool the pod uses: its controller, or
// the controller above it for a ReplicaSet or Job (above is that object's controller
// reference, read by the caller for what Intermediate names; nil when it has none).
//
//	ReplicaSet <deployment>-<pod-template-hash>   -> the Deployment (no read)
//	ReplicaSet or Job with a controller above     -> that controller (a CronJob's Jobs -> the CronJob)
//	bare ReplicaSet or Job, DaemonSet, StatefulSet -> itself
//	any other controller (Kind.group)             -> itself
func WorkloadOf(pod *corev1.Pod, above *metav1.OwnerReference) (Workload, bool) {
	ref := metav1.GetControllerOf(pod)
	if ref == nil {
		return Workload{}, false
	}
	kind := KindOf(ref.APIVersion, ref.Kind)
	if kind == KindReplicaSet {
		if name, ok := deploymentOf(pod, ref); ok {
			return Workload{KindDeployment, pod.Namespace, name}, true
		}
	}
	if (kind == KindReplicaSet || kind == KindJob) && above != nil && above.Name != "" {
		return Workload{KindOf(above.APIVersion, above.Kind), pod.Namespace, above.Name}, true
	}
	return Workload{kind, pod.Namespace, ref.Name}, true
}

// deploymentOf: a Deployment's pods are owned by a ReplicaSet named
// <deployment>-<pod-template-hash>, the hash being also the pod's label.
func deploymentOf(pod *corev1.Pod, rs *metav1.OwnerReference) (string, bool) {
	hash := pod.Labels["pod-template-hash"]
	if hash == "" {
		return "", false
	}
	return strings.CutSuffix(rs.Name, "-"+hash)
}
