package service

import (
	"context"
	"fmt"
	"strings"
	"time"

	"go.uber.org/zap"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/core/recycle"
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
		itf.PodUID == string(cached.UID) && recycle.SupersededBy(ep, itf, string(cached.UID)) == nil {
		return "", nil
	}
	pod, err := s.Cluster.PodFresh(ctx, ep.Namespace, ep.Name)
	if err != nil {
		return "", err
	}
	return recycle.Judge(ep, itf, pod, func() (bool, error) { return s.ordinalWanted(ctx, ep) })
}
