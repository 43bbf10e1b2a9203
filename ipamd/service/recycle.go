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
	ReasonPodDeleted      = "pod-deleted"
	ReasonPodReplaced     = "pod-replaced" // same name, another UID, not a StatefulSet
	ReasonPodFinished     = "pod-finished" // Succeeded or Failed
	ReasonPodTerminating  = "pod-terminating-past-grace"
	ReasonNodeGone        = "node-gone"
	ReasonStatefulSetGone = "statefulset-scaled-down-or-deleted"
)

// Recycle releases attachments whose owner is provably gone. It looks at this node's
// Endpoints and at those of nodes that no longer exist. Each decision rests on a fresh
// read of the pod from the API, never on a cached or single stale attribute, and the
// release only removes the exact record that was judged, so an attachment handed to a
// StatefulSet successor meanwhile is left alone. grace protects attachments younger
// than it and adds a margin to a terminating pod's grace period.
func (s *Service) Recycle(ctx context.Context, now time.Time, grace time.Duration) (map[string]int, error) {
	var list v1.EndpointList
	if err := s.Endpoints.Cache.List(ctx, &list, client.UnsafeDisableDeepCopy); err != nil {
		return nil, err
	}
	released := map[string]int{}
	nodeGone := map[string]bool{}
	for i := range list.Items {
		ep := &list.Items[i]
		mine := ep.Status.Node == s.Node
		if !mine {
			gone, seen := nodeGone[ep.Status.Node]
			if !seen {
				exists, err := s.Cluster.NodeExists(ctx, ep.Status.Node)
				if err != nil {
					return released, err
				}
				gone = !exists && ep.Status.Node != ""
				nodeGone[ep.Status.Node] = gone
			}
			if !gone {
				continue // another node's ipamd looks after it
			}
		}
		for _, itf := range ep.Status.Interfaces {
			if now.Sub(itf.Created.Time) < grace {
				continue
			}
			reason, err := s.verdict(ctx, ep, &itf, !mine, now, grace)
			if err != nil {
				return released, err
			}
			if reason == "" {
				continue
			}
			judged := itf
			err = s.releaseFrom(ctx, client.ObjectKeyFromObject(ep), func(cur *v1.EndpointInterface) bool {
				return cur.ContainerID == judged.ContainerID && cur.Interface == judged.Interface && cur.PodUID == judged.PodUID
			})
			if err != nil {
				return released, err
			}
			released[reason]++
			s.Metrics.Recycled.WithLabelValues(reason).Inc()
			s.Log.Info("recycled", zap.String("pod", ep.Namespace+"/"+ep.Name), zap.String("containerID", judged.ContainerID),
				zap.String("ifName", judged.Interface), zap.String("reason", reason), zap.Any("ips", judged.IPs))
		}
	}
	return released, nil
}

// verdict says why an attachment's owner is gone, or "" when it may be alive. A pod the
// informer shows alive and unchanged needs no API read; any sign of it being gone is
// confirmed with a fresh read before anything is released.
func (s *Service) verdict(ctx context.Context, ep *v1.Endpoint, itf *v1.EndpointInterface, nodeGone bool, now time.Time, grace time.Duration) (string, error) {
	if !nodeGone && aliveAsRecorded(s.Cluster.PodCached(ctx, ep.Namespace, ep.Name), itf) {
		return "", nil
	}
	pod, err := s.Cluster.PodFresh(ctx, ep.Namespace, ep.Name)
	if err != nil {
		return "", err
	}
	sts := ep.Status.OwnerKind == "StatefulSet"
	switch {
	case pod == nil && sts:
		return s.statefulSetVerdict(ctx, ep)
	case pod == nil:
		return ReasonPodDeleted, nil
	case itf.PodUID != "" && string(pod.UID) != itf.PodUID:
		if sts {
			return "", nil // the successor inherits the addresses on its ADD
		}
		return ReasonPodReplaced, nil
	case pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed:
		return ReasonPodFinished, nil
	case pod.DeletionTimestamp != nil && now.After(pod.DeletionTimestamp.Add(grace)) && !sts:
		// deletionTimestamp already includes the pod's grace period; grace is the margin
		return ReasonPodTerminating, nil
	case nodeGone && !sts:
		return ReasonNodeGone, nil
	}
	return "", nil
}

// statefulSetVerdict keeps a deleted StatefulSet pod's addresses for its successor while
// the set still wants that ordinal.
func (s *Service) statefulSetVerdict(ctx context.Context, ep *v1.Endpoint) (string, error) {
	replicas, err := s.Cluster.StatefulSetReplicas(ctx, ep.Namespace, ep.Status.OwnerName)
	if err != nil {
		return "", err
	}
	ordinal, err := ordinalOf(ep.Name, ep.Status.OwnerName)
	if err != nil || replicas < 0 || int32(ordinal) >= replicas {
		return ReasonStatefulSetGone, nil
	}
	return "", nil
}

func ordinalOf(pod, set string) (int, error) {
	suffix, ok := strings.CutPrefix(pod, set+"-")
	if !ok {
		return 0, fmt.Errorf("pod %s is not named after StatefulSet %s", pod, set)
	}
	return strconv.Atoi(suffix)
}

func aliveAsRecorded(pod *corev1.Pod, itf *v1.EndpointInterface) bool {
	return pod != nil && (itf.PodUID == "" || string(pod.UID) == itf.PodUID) && pod.DeletionTimestamp == nil &&
		pod.Status.Phase != corev1.PodSucceeded && pod.Status.Phase != corev1.PodFailed
}
