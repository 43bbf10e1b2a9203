package kubectlplugin

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/underpool/underpool/ipamd/api/v1"
	"github.com/underpool/underpool/ipamd/service"
)

// verdict says why recycling would free an attachment, with the evidence, or "" when its
// owner may be alive. It is a read-only copy of ipamd/service's verdict (unexported there),
// reading the pod and StatefulSet from the API as ipamd does before it frees anything.
func verdict(ctx context.Context, c client.Reader, ep *v1.Endpoint, itf *v1.EndpointInterface) (reason, why string, err error) {
	key := client.ObjectKey{Namespace: ep.Namespace, Name: ep.Name}
	pod := &corev1.Pod{}
	if err := c.Get(ctx, key, pod); apierrors.IsNotFound(err) {
		pod = nil
	} else if err != nil {
		return "", "", fmt.Errorf("reading pod %s: %w", key, err)
	}
	sts := ep.Status.OwnerKind == "StatefulSet"
	switch {
	case pod == nil && sts:
		wanted, why, err := ordinalWanted(ctx, c, ep)
		if err != nil || wanted {
			return "", why, err
		}
		return service.ReasonStatefulSetGone, why, nil
	case pod == nil:
		return service.ReasonPodDeleted, fmt.Sprintf("pod %s no longer exists", key), nil
	}
	if newer := supersededBy(ep, itf, string(pod.UID)); newer != nil {
		return service.ReasonSandboxReplaced, fmt.Sprintf("the pod holds a newer attachment on %s (container %s, made %s)",
			itf.Interface, newer.ContainerID, newer.Created.UTC().Format("2006-01-02T15:04:05Z")), nil
	}
	switch {
	case itf.PodUID == "" || itf.PodUID == string(pod.UID):
		return "", "pod " + key.String() + " lives (" + string(pod.Status.Phase) + ")", nil
	case !sts:
		return service.ReasonPodReplaced, fmt.Sprintf("pod %s is now another incarnation (UID %s, the attachment's is %s) and no StatefulSet pod",
			key, pod.UID, itf.PodUID), nil
	case pod.Status.Phase == corev1.PodRunning:
		return service.ReasonSuccessorDidNot, fmt.Sprintf("the StatefulSet's new pod %s (UID %s) runs without these addresses", key, pod.UID), nil
	}
	return "", fmt.Sprintf("the StatefulSet's new pod %s (UID %s) has not attached yet: it takes them over", key, pod.UID), nil
}

// supersededBy returns the newer live attachment of pod incarnation uid on the same
// interface and network, which makes itf's sandbox gone.
func supersededBy(ep *v1.Endpoint, itf *v1.EndpointInterface, uid string) *v1.EndpointInterface {
	for i := range ep.Status.Interfaces {
		other := &ep.Status.Interfaces[i]
		if other.ContainerID != itf.ContainerID && other.Interface == itf.Interface && other.Network == itf.Network &&
			other.PodUID == uid && other.Detached == nil && other.Created.After(itf.Created.Time) {
			return other
		}
	}
	return nil
}

// ordinalWanted reads the Endpoint's StatefulSet and says whether it wants the pod's ordinal.
func ordinalWanted(ctx context.Context, c client.Reader, ep *v1.Endpoint) (bool, string, error) {
	set := &appsv1.StatefulSet{}
	key := client.ObjectKey{Namespace: ep.Namespace, Name: ep.Status.OwnerName}
	err := c.Get(ctx, key, set)
	switch {
	case apierrors.IsNotFound(err):
		return false, fmt.Sprintf("pod %s/%s is gone and its StatefulSet %s is deleted", ep.Namespace, ep.Name, key.Name), nil
	case err != nil:
		return false, "", fmt.Errorf("reading StatefulSet %s: %w", key, err)
	case set.DeletionTimestamp != nil:
		return false, fmt.Sprintf("pod %s/%s is gone and its StatefulSet %s is being deleted", ep.Namespace, ep.Name, key.Name), nil
	}
	o := service.Ordinals{Replicas: 1}
	if set.Spec.Replicas != nil {
		o.Replicas = *set.Spec.Replicas
	}
	if set.Spec.Ordinals != nil {
		o.Start = set.Spec.Ordinals.Start
	}
	n, err := strconv.Atoi(strings.TrimPrefix(ep.Name, ep.Status.OwnerName+"-"))
	if err != nil || !strings.HasPrefix(ep.Name, ep.Status.OwnerName+"-") {
		return false, fmt.Sprintf("pod %s/%s is gone and is not named after StatefulSet %s", ep.Namespace, ep.Name, key.Name), nil
	}
	if o.Wants(n) {
		return true, fmt.Sprintf("pod %s/%s is gone but StatefulSet %s still wants ordinal %d: kept for its successor", ep.Namespace, ep.Name, key.Name, n), nil
	}
	return false, fmt.Sprintf("pod %s/%s is gone and StatefulSet %s no longer wants ordinal %d (it wants %d pods from ordinal %d)",
		ep.Namespace, ep.Name, key.Name, n, o.Replicas, o.Start), nil
}
