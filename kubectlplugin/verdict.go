package kubectlplugin

import (
	"context"
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/core/recycle"
)

// verdict says why recycling would free an attachment, with the evidence, or "" when its
// owner may be alive. The decision is ipamd's own (recycle.Judge), on the pod and
// StatefulSet read from the API as ipamd reads them before it frees anything; this adds
// the words.
func verdict(ctx context.Context, c client.Reader, ep *v1.Endpoint, itf *v1.EndpointInterface) (reason, why string, err error) {
	key := client.ObjectKey{Namespace: ep.Namespace, Name: ep.Name}
	pod := &corev1.Pod{}
	if err := c.Get(ctx, key, pod); apierrors.IsNotFound(err) {
		pod = nil
	} else if err != nil {
		return "", "", fmt.Errorf("reading pod %s: %w", key, err)
	}
	var ordinalWhy string
	reason, err = recycle.Judge(ep, itf, pod, func() (bool, error) {
		wanted, why, err := ordinalWanted(ctx, c, ep)
		ordinalWhy = why
		return wanted, err
	})
	if err != nil {
		return "", "", err
	}
	switch reason {
	case recycle.ReasonStatefulSetGone:
		return reason, ordinalWhy, nil
	case recycle.ReasonPodDeleted:
		return reason, fmt.Sprintf("pod %s no longer exists", key), nil
	case recycle.ReasonSandboxReplaced:
		newer := recycle.SupersededBy(ep, itf, string(pod.UID))
		return reason, fmt.Sprintf("the pod holds a newer attachment on %s (container %s, made %s)",
			itf.Interface, newer.ContainerID, newer.Created.UTC().Format("2006-01-02T15:04:05Z")), nil
	case recycle.ReasonPodReplaced:
		return reason, fmt.Sprintf("pod %s is now another incarnation (UID %s, the attachment's is %s) and no StatefulSet pod",
			key, pod.UID, itf.PodUID), nil
	case recycle.ReasonSuccessorDidNot:
		return reason, fmt.Sprintf("the StatefulSet's new pod %s (UID %s) runs without these addresses", key, pod.UID), nil
	}
	switch {
	case pod == nil:
		return "", ordinalWhy, nil
	case itf.PodUID == "" || itf.PodUID == string(pod.UID):
		return "", "pod " + key.String() + " lives (" + string(pod.Status.Phase) + ")", nil
	}
	return "", fmt.Sprintf("the StatefulSet's new pod %s (UID %s) has not attached yet: it takes them over", key, pod.UID), nil
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
	o := recycle.OrdinalsOf(set)
	n, err := recycle.OrdinalOf(ep.Name, ep.Status.OwnerName)
	if err != nil {
		return false, fmt.Sprintf("pod %s/%s is gone and is not named after StatefulSet %s", ep.Namespace, ep.Name, key.Name), nil
	}
	if o.Wants(n) {
		return true, fmt.Sprintf("pod %s/%s is gone but StatefulSet %s still wants ordinal %d: kept for its successor", ep.Namespace, ep.Name, key.Name, n), nil
	}
	return false, fmt.Sprintf("pod %s/%s is gone and StatefulSet %s no longer wants ordinal %d (it wants %d pods from ordinal %d)",
		ep.Namespace, ep.Name, key.Name, n, o.Replicas, o.Start), nil
}
