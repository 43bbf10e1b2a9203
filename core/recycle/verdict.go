// Package recycle is the verdict on an attachment whose release nobody asked for: whether
// its owner is provably gone, and why. It owns the reasons (also the metric's label values),
// the verdict (Judge), the sandbox-replaced test (SupersededBy) and the StatefulSet ordinal
// arithmetic. Pure: ipamd, the controller and `kubectl underpool gc --dry-run` read the
// cluster each in their own way and all judge here, so they cannot disagree.
package recycle

import (
	"fmt"
	"strconv"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"

	v1 "github.com/underpool/underpool/api/v1"
)

// Reasons an attachment is recycled; also the metric's label values.
const (
	// ReasonPodDeleted: no pod of that name exists any more.
	ReasonPodDeleted = "pod-deleted"
	// ReasonPodReplaced: a pod of that name exists with another UID and is no
	// StatefulSet pod, so the incarnation the addresses were given to is gone.
	ReasonPodReplaced = "pod-replaced"
	// ReasonSandboxReplaced: the live pod holds another attachment on the same interface
	// and network, so this one's sandbox is gone (its DEL was lost).
	ReasonSandboxReplaced = "sandbox-replaced"
	// ReasonStatefulSetGone: the set is gone or no longer wants the pod's ordinal.
	ReasonStatefulSetGone = "statefulset-scaled-down-or-deleted"
	// ReasonSuccessorDidNot: a StatefulSet pod's successor is running without having
	// taken over its predecessor's addresses on this interface.
	ReasonSuccessorDidNot = "statefulset-successor-running-without-them"
)

// Judge is recycling's verdict on one attachment of ep: the reason its owner is provably
// gone, or "" when it may be alive. pod is the pod of ep's name as the API holds it now (nil:
// gone); ordinalWanted, asked only for a gone StatefulSet pod, says whether its set still
// wants the ordinal. Pure, so that `kubectl underpool gc --dry-run` judges as ipamd and the controller do.
func Judge(ep *v1.Endpoint, itf *v1.EndpointInterface, pod *corev1.Pod, ordinalWanted func() (bool, error)) (string, error) {
	sts := ep.Status.OwnerKind == "StatefulSet"
	switch {
	case pod == nil && sts:
		wanted, err := ordinalWanted()
		if err != nil || wanted {
			return "", err
		}
		return ReasonStatefulSetGone, nil
	case pod == nil:
		return ReasonPodDeleted, nil
	case SupersededBy(ep, itf, string(pod.UID)) != nil:
		return ReasonSandboxReplaced, nil
	case itf.PodUID == "" || itf.PodUID == string(pod.UID):
		return "", nil // the pod lives: phase, node health and namespace state do not matter
	case !sts:
		return ReasonPodReplaced, nil
	case pod.Status.Phase == corev1.PodRunning:
		// the successor's ADD took these over or released them before it could run: it
		// runs without them, so nothing will take them
		return ReasonSuccessorDidNot, nil
	}
	return "", nil // the successor has not attached yet; it takes them over on its ADD
}

// SupersededBy returns the newer, live attachment the pod incarnation uid holds on itf's
// interface and network, or nil: a pod has one sandbox, so itf's is gone when there is one.
// (Two made in the same second are not ordered: neither is judged, which only delays
// reclaiming.) An itf that records no network (an imported one) is superseded on its
// interface whatever the newer one's network.
func SupersededBy(ep *v1.Endpoint, itf *v1.EndpointInterface, uid string) *v1.EndpointInterface {
	for i := range ep.Status.Interfaces {
		other := &ep.Status.Interfaces[i]
		if other.ContainerID != itf.ContainerID && other.Interface == itf.Interface && (other.Network == itf.Network || itf.Network == "") &&
			other.PodUID == uid && other.Detached == nil && other.Created.After(itf.Created.Time) {
			return other
		}
	}
	return nil
}

// OrdinalOf is the ordinal in a StatefulSet pod's name.
func OrdinalOf(pod, set string) (int, error) {
	suffix, ok := strings.CutPrefix(pod, set+"-")
	if !ok {
		return 0, fmt.Errorf("pod %s is not named after StatefulSet %s", pod, set)
	}
	return strconv.Atoi(suffix)
}

// Ordinals is the range of pod ordinals a StatefulSet wants: [Start, Start+Replicas).
type Ordinals struct{ Start, Replicas int32 }

// Wants reports whether ordinal n is in the range.
func (o Ordinals) Wants(n int) bool { return n >= int(o.Start) && n < int(o.Start)+int(o.Replicas) }

// OrdinalsOf is the range set wants now (its spec, not its status: a pod the spec no longer
// wants is gone for good even if the controller has not deleted it yet).
func OrdinalsOf(set *appsv1.StatefulSet) Ordinals {
	o := Ordinals{Replicas: 1}
	if set.Spec.Replicas != nil {
		o.Replicas = *set.Spec.Replicas
	}
	if set.Spec.Ordinals != nil {
		o.Start = set.Spec.Ordinals.Start
	}
	return o
}
