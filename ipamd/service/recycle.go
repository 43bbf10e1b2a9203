package service

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/underpool/underpool/ipamd/api/v1"
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

// Recycle releases attachments whose owner is provably gone, among this node's Endpoints
// (the only ones ipamd caches: its memory and watch traffic must not grow with the
// cluster). The Endpoints of nodes that no longer exist have no ipamd left: the elected
// controller recycles those (RecycleGoneNodes).
//
// While a pod object exists its addresses stay held, whatever its phase, its node's
// health or its namespace's state (invariant 8): a pod Terminating on a node whose kubelet
// is down may still run, and so may a pod whose Node object was deleted. Only a pod that
// is gone (or an incarnation replaced by another UID, or a sandbox replaced by another)
// frees addresses. Each decision rests on a fresh read of the pod from the API, and the
// release removes only the exact record judged, in a resourceVersion-guarded write, so an
// attachment taken over meanwhile, or already released by someone else, is left alone.
// grace protects attachments younger than it. One Endpoint that cannot be judged (an API
// error) is skipped for this round; the others are still looked at.
func (s *Service) Recycle(ctx context.Context, now time.Time, grace time.Duration) (map[string]int, error) {
	list, err := s.Endpoints.OnNode(ctx, s.Node)
	if err != nil {
		return nil, err
	}
	return s.recycle(ctx, list, now, grace)
}

// RecycleGoneNodes does what Recycle does for the Endpoints whose node nodeExists denies
// (or that name none): those no ipamd looks after. The elected controller runs it from its
// cache of every Endpoint and Node, so no node asks the API about other nodes; it denies
// nodes that are gone, out of service or long unready (controller/gonenodes.go). Judging
// rests on the pod alone, so it is safe even when a node's ipamd still runs (a Node object
// deleted under a live machine): both may judge, the guarded write lets one release.
func (s *Service) RecycleGoneNodes(ctx context.Context, now time.Time, grace time.Duration, nodeExists func(string) bool) (map[string]int, error) {
	list, err := s.Endpoints.List(ctx)
	if err != nil {
		return nil, err
	}
	var gone []v1.Endpoint
	for _, ep := range list {
		if ep.Status.Node == "" || !nodeExists(ep.Status.Node) {
			gone = append(gone, ep)
		}
	}
	return s.recycle(ctx, gone, now, grace)
}

func (s *Service) recycle(ctx context.Context, list []v1.Endpoint, now time.Time, grace time.Duration) (map[string]int, error) {
	released := map[string]int{}
	var errs []string
	for i := range list {
		ep := &list[i]
		if len(ep.Status.Interfaces) == 0 && now.Sub(ep.CreationTimestamp.Time) >= grace {
			// left when the delete after the last release failed; it holds nothing
			if err := s.Endpoints.DeleteEmpty(ctx, ep); err != nil {
				errs = append(errs, err.Error())
			}
			continue
		}
		for _, itf := range ep.Status.Interfaces {
			if now.Sub(itf.Created.Time) < grace {
				continue
			}
			reason, err := s.verdict(ctx, ep, &itf)
			if err != nil {
				errs = append(errs, fmt.Sprintf("%s/%s: %v", ep.Namespace, ep.Name, err))
				continue
			}
			if reason == "" {
				continue
			}
			judged := itf
			err = s.releaseFrom(ctx, client.ObjectKeyFromObject(ep), func(cur *v1.EndpointInterface) bool {
				return cur.ContainerID == judged.ContainerID && cur.Interface == judged.Interface && cur.PodUID == judged.PodUID
			})
			if err != nil {
				errs = append(errs, err.Error())
				continue
			}
			released[reason]++
			s.Metrics.Recycled.WithLabelValues(reason).Inc()
			s.Log.Info("recycled", zap.String("pod", ep.Namespace+"/"+ep.Name), zap.String("node", ep.Status.Node),
				zap.String("containerID", judged.ContainerID), zap.String("ifName", judged.Interface),
				zap.String("reason", reason), zap.Any("ips", judged.IPs))
		}
	}
	if len(errs) > 0 {
		return released, fmt.Errorf("%d attachments not judged this round: %s", len(errs), strings.Join(errs, "; "))
	}
	return released, nil
}

// verdict says why an attachment's owner is gone, or "" when it may be alive. A pod the
// informer shows as the recorded incarnation needs no API read; any sign of it being gone
// is confirmed with a fresh read before anything is released.
func (s *Service) verdict(ctx context.Context, ep *v1.Endpoint, itf *v1.EndpointInterface) (string, error) {
	if cached := s.Cluster.PodCached(ctx, ep.Namespace, ep.Name); cached != nil && itf.Detached == nil &&
		itf.PodUID == string(cached.UID) && SupersededBy(ep, itf, string(cached.UID)) == nil {
		return "", nil
	}
	pod, err := s.Cluster.PodFresh(ctx, ep.Namespace, ep.Name)
	if err != nil {
		return "", err
	}
	return Judge(ep, itf, pod, func() (bool, error) { return s.ordinalWanted(ctx, ep) })
}

// Judge is recycling's verdict on one attachment of ep: the reason its owner is provably
// gone, or "" when it may be alive. pod is the pod of ep's name as the API holds it now (nil:
// gone); ordinalWanted, asked only for a gone StatefulSet pod, says whether its set still
// wants the ordinal. Pure, so that `kubectl underpool gc --dry-run` judges as ipamd does.
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
// reclaiming.)
func SupersededBy(ep *v1.Endpoint, itf *v1.EndpointInterface, uid string) *v1.EndpointInterface {
	for i := range ep.Status.Interfaces {
		other := &ep.Status.Interfaces[i]
		if other.ContainerID != itf.ContainerID && other.Interface == itf.Interface && other.Network == itf.Network &&
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
