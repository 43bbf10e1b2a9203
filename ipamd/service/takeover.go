package service

import (
	"context"
	"fmt"

	"go.uber.org/zap"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/core/selection"
	"github.com/underpool/underpool/rpc"
)

// takeOver is the phase of Allocate that hands a predecessor's addresses on instead of
// allocating (predecessor says which attachment that is: the same pod's earlier sandbox,
// or a StatefulSet pod's predecessor under the same name), when their pools serve this
// pod here; when they do not, the old addresses go back and the pod gets fresh ones.
// took says the ADD is answered with ips.
func (s *Service) takeOver(ctx context.Context, a attachment, ep *v1.Endpoint) (ips []v1.EndpointIP, took bool, err error) {
	if predecessor(ep, a.in.Pod, a.req) == nil {
		return nil, false, nil
	}
	// a takeover is decided on the API's copy: the cache may still show a record that
	// another node has released (and its Endpoint deleted) since
	if ep, err = s.Endpoints.Fresh(ctx, a.key); err != nil {
		return nil, false, internal("reading Endpoint %s: %v", a.key, err)
	}
	if rec := findInterface(ep, a.req.ContainerID, a.req.IfName); rec != nil && rec.Detached == nil {
		return rec.IPs, true, nil
	}
	rec := predecessor(ep, a.in.Pod, a.req)
	if rec == nil {
		return nil, false, nil
	}
	if err := s.stillThePod(ctx, a, ep); err != nil {
		return nil, false, err
	}
	why := s.notAllowedHere(a.in, rec)
	if why == "" {
		ips, err := s.inherit(ctx, a, rec)
		return ips, err == nil, err
	}
	// the pod landed where the predecessor's pool does not reach: it gets a fresh
	// address and the old one goes back
	s.Log.Info("pod cannot keep its predecessor's addresses here", zap.String("pod", a.key.String()), zap.String("why", why))
	old := *rec
	return nil, false, s.releaseLocked(ctx, a.key, func(itf *v1.EndpointInterface) bool {
		return itf.ContainerID == old.ContainerID && itf.Interface == old.Interface && itf.PodUID == old.PodUID
	}, nil)
}

// predecessor finds the attachment this ADD takes over instead of allocating: on the same
// interface and network, made for
//   - this very pod by an earlier sandbox: the kubelet runs one sandbox per pod and makes
//     a new one only once the old is stopped, so the old one is gone, whether its DEL
//     reached ipamd (a StatefulSet pod's then stay, detached) or was lost;
//   - a StatefulSet pod's predecessor under the same name (another UID): the set
//     recreates a pod only once the old object is gone, and the successor keeps the
//     addresses on any node their pool reaches.
//
// An attachment that records no network is one `kubectl underpool import` made (the peer
// knew no CNI network name); the interface alone names it: a pod has one attachment per
// interface.
func predecessor(ep *v1.Endpoint, pod *corev1.Pod, req *rpc.AllocateRequest) *v1.EndpointInterface {
	if ep == nil || pod == nil {
		return nil
	}
	sts := ownerKind(pod) == "StatefulSet"
	for i := range ep.Status.Interfaces {
		itf := &ep.Status.Interfaces[i]
		if itf.Interface != req.IfName || (itf.Network != "" && itf.Network != req.Network) {
			continue
		}
		sameContainer := itf.ContainerID == req.ContainerID // detached by a DEL, now ADDed again
		samePod := itf.PodUID == string(pod.UID)
		if sameContainer || samePod || (sts && itf.PodUID != "") {
			return itf
		}
	}
	return nil
}

// notAllowedHere says why the pools of a predecessor's addresses do not serve this pod
// here (affinity to another node, say), or "" when they do.
func (s *Service) notAllowedHere(in *selection.Input, rec *v1.EndpointInterface) string {
	for _, ip := range rec.IPs {
		var pool *v1.IPPool
		for i := range in.Pools {
			if in.Pools[i].Name == ip.Pool {
				pool = &in.Pools[i]
			}
		}
		if pool == nil {
			return "pool " + ip.Pool + " is gone"
		}
		if ok, why := selection.Eligible(pool, in); !ok {
			return "pool " + ip.Pool + ": " + why
		}
	}
	return ""
}

// inherit moves a predecessor's attachment to the new container: the pool is unchanged,
// only the Endpoint learns the new owner (and node). It returns the addresses handed on.
func (s *Service) inherit(ctx context.Context, a attachment, old *v1.EndpointInterface) ([]v1.EndpointIP, error) {
	key, in, req := a.key, a.in, a.req
	prev := *old
	var ips []v1.EndpointIP
	err := s.Endpoints.Mutate(ctx, key, func(ep *v1.Endpoint) bool {
		for i := range ep.Status.Interfaces {
			itf := &ep.Status.Interfaces[i]
			if itf.ContainerID == prev.ContainerID && itf.Interface == prev.Interface && itf.PodUID == prev.PodUID {
				itf.ContainerID, itf.PodUID, itf.Created = req.ContainerID, string(in.Pod.UID), metav1.NewTime(s.now())
				itf.Detached = nil
				if itf.Network == "" { // an imported attachment: it is this network's from now on
					itf.Network = req.Network
				}
				ips = itf.IPs
				s.stampOwner(ep, in.Pod, req)
				return true
			}
		}
		ips = nil
		return false
	})
	if err != nil {
		return nil, internal("handing %s's addresses to its successor: %v", key, err)
	}
	if ips == nil {
		return nil, &rpc.Error{Code: rpc.CodeTryAgainLater, Message: fmt.Sprintf("the predecessor's attachment of %s changed meanwhile; retry", key)}
	}
	s.Log.Info("pod takes over its predecessor's addresses", zap.String("pod", key.String()),
		zap.String("containerID", req.ContainerID), zap.String("previousContainerID", prev.ContainerID), zap.Any("ips", ips))
	return ips, nil
}
