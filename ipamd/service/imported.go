package service

import (
	"context"

	"go.uber.org/zap"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/rpc"
)

// unknownSandbox returns, for a DEL of one of pod key's interfaces, a match for the
// attachments an import recorded with an unknown sandbox (v1.IsUnknownSandbox) for the
// DEL's pod incarnation, when this DEL may end them; nil when it may not.
//
// A peer that keeps no sandbox ID (Spiderpool 0.8 and later) leaves the import an
// attachment no runtime will ever DEL by name: the DEL that ends it comes from a sandbox
// ipamd never saw an ADD of, for the same pod UID and interface. ipamd cannot tell which
// sandbox that was: the one that held the address at the import, or an earlier one of the
// same pod whose DEL the runtime repeats (a CNI DEL may come more than once, e.g. after a
// runtime restart). So such a DEL ends the attachment only when, on a fresh read, the pod
// incarnation is gone: deleted, or replaced by another. While its object exists, whatever
// its phase or deletion state, a repeated DEL of an earlier sandbox cannot be told from the
// last sandbox's, and the last one may still hold the address (invariant 8: while a pod
// object exists its addresses stay held); recycling frees the address once the object is
// gone. A DEL while the pod runs on (a sandbox restart) ends nothing either: the new sandbox's ADD takes the
// attachment over by pod UID (takeOver), and from then on it has a real container ID; one
// that never comes leaves it to recycling once the pod is gone. The match is applied in
// the Endpoint's guarded write, so an attachment taken over meanwhile is no longer matched.
func (s *Service) unknownSandbox(ctx context.Context, key client.ObjectKey, req *rpc.ReleaseRequest) func(*v1.EndpointInterface) bool {
	if req.Pod.UID == "" {
		return nil // without the pod's UID the DEL may be any incarnation's
	}
	match := func(itf *v1.EndpointInterface) bool {
		return v1.IsUnknownSandbox(itf.ContainerID) && itf.PodUID == req.Pod.UID && (req.IfName == "" || itf.Interface == req.IfName)
	}
	ep, err := s.Endpoints.Get(ctx, key)
	if err != nil || ep == nil || !anyInterface(ep, match) {
		return nil // the common case: no imported attachment of this pod here, no API read
	}
	pod, err := s.Cluster.PodFresh(ctx, key.Namespace, key.Name)
	if err != nil {
		s.Log.Warn("cannot read the pod: its imported attachment stays until recycling or its next DEL",
			zap.String("pod", key.String()), zap.Error(err))
		return nil
	}
	if why := incarnationGone(pod, req.Pod.UID); why != "" {
		s.Log.Info("DEL ends the imported attachment of an unknown sandbox", zap.String("pod", key.String()),
			zap.String("containerID", req.ContainerID), zap.String("ifName", req.IfName), zap.String("because", why))
		return match
	}
	s.Log.Info("DEL of a sandbox ipamd never saw, while the pod exists: its imported attachment stays for the pod's next ADD, or for recycling once the pod is gone",
		zap.String("pod", key.String()), zap.String("containerID", req.ContainerID), zap.String("ifName", req.IfName))
	return nil
}

// incarnationGone says why pod incarnation uid no longer exists, or "" while it does: pod
// is as the API holds it now (nil: gone).
func incarnationGone(pod *corev1.Pod, uid string) string {
	switch {
	case pod == nil:
		return "the pod is gone"
	case string(pod.UID) != uid:
		return "the pod was replaced by another incarnation"
	}
	return ""
}

func anyInterface(ep *v1.Endpoint, match func(*v1.EndpointInterface) bool) bool {
	for i := range ep.Status.Interfaces {
		if match(&ep.Status.Interfaces[i]) {
			return true
		}
	}
	return false
}
