package service

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"go.uber.org/zap"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/underpool/underpool/ipamd/allocator"
	v1 "github.com/underpool/underpool/ipamd/api/v1"
	"github.com/underpool/underpool/ipamd/rpc"
	"github.com/underpool/underpool/ipamd/selection"
	"github.com/underpool/underpool/ipamd/store"
	"github.com/underpool/underpool/netplan"
)

// Allocate gives an attachment its addresses, or returns the ones it already holds.
func (s *Service) Allocate(ctx context.Context, req *rpc.AllocateRequest) (resp *rpc.AllocateResponse, err error) {
	start := time.Now()
	defer s.Metrics.begin("allocate")()
	defer func() { s.Metrics.observeAllocate(start, err) }()
	if e := validateAllocate(req); e != nil {
		return nil, e
	}
	in, requested, err := s.selectionInput(ctx, req)
	if err != nil {
		return nil, err
	}
	defer func() { s.allocationFailed(in, err) }()
	candidates, source, err := selection.Candidates(in)
	if err != nil {
		return nil, badRequest("pools", "%v", err)
	}

	key := client.ObjectKey{Namespace: req.Pod.Namespace, Name: req.Pod.Name}
	unlock := s.locks.lock(key.String())
	defer unlock()
	ep, err := s.Endpoints.Get(ctx, key)
	if err == nil && ep == nil && in.Pod != nil && ownerKind(in.Pod) == "StatefulSet" {
		// ipamd caches only its node's Endpoints: a StatefulSet pod's predecessor may have
		// run, and left its addresses detached, on another node
		ep, err = s.Endpoints.Fresh(ctx, key)
	}
	if err != nil {
		return nil, internal("reading Endpoint %s: %v", key, err)
	}
	if rec := findInterface(ep, req.ContainerID, req.IfName); rec != nil && (rec.Detached == nil || req.LookupOnly) {
		return s.response(ctx, in, rec.IPs, nil)
	}
	if req.LookupOnly {
		return nil, &rpc.Error{Code: rpc.CodeNotHeld, Field: "containerID",
			Message: fmt.Sprintf("ipamd holds no address for container %s interface %s (pod %s)", req.ContainerID, req.IfName, key)}
	}
	if predecessor(ep, in.Pod, req) != nil {
		// a takeover is decided on the API's copy: the cache may still show a record that
		// another node has released (and its Endpoint deleted) since
		if ep, err = s.Endpoints.Fresh(ctx, key); err != nil {
			return nil, internal("reading Endpoint %s: %v", key, err)
		}
		if rec := findInterface(ep, req.ContainerID, req.IfName); rec != nil && rec.Detached == nil {
			return s.response(ctx, in, rec.IPs, nil)
		}
	}
	if rec := predecessor(ep, in.Pod, req); rec != nil {
		why := s.notAllowedHere(in, rec)
		if why == "" {
			return s.inherit(ctx, key, in, req, rec)
		}
		// the pod landed where the predecessor's pool does not reach: it gets a fresh
		// address and the old one goes back
		s.Log.Info("pod cannot keep its predecessor's addresses here", zap.String("pod", key.String()), zap.String("why", why))
		old := *rec
		if err := s.releaseLocked(ctx, key, func(itf *v1.EndpointInterface) bool {
			return itf.ContainerID == old.ContainerID && itf.Interface == old.Interface && itf.PodUID == old.PodUID
		}, nil); err != nil {
			return nil, err
		}
	}

	var held []v1.EndpointIP
	// the pools as the commit parsed them: the response needs their routes, and parsing
	// each pool again from the cache after the commit was pure waste
	views := map[string]*allocator.PoolView{}
	// taken before the first pool commit is sent: the Endpoint write that records the
	// allocation, and any rollback, are sent only within the first half of the commit
	// window after it (docs/design.md, the release protocol)
	evidence := s.now()
	rollback := func() { s.releaseIPs(ctx, held, evidence) }
	for _, fam := range []struct {
		field, label string
		pools        []string
		want         netip.Addr
	}{{"ipv4Pools", "IPv4", candidates.IPv4, requested[4]}, {"ipv6Pools", "IPv6", candidates.IPv6, requested[6]}} {
		if len(fam.pools) == 0 {
			if fam.want.IsValid() {
				rollback()
				return nil, badRequest("requestedIPs", "requested %s but %s names no %s pool for %s", fam.want, source, fam.label, req.IfName)
			}
			continue
		}
		ip, view, err := s.allocateFrom(ctx, in, fam.field, fam.label, source, fam.pools, fam.want)
		if err != nil {
			rollback()
			return nil, err
		}
		held = append(held, ip)
		views[ip.Pool] = view
	}

	rec := v1.EndpointInterface{ContainerID: req.ContainerID, Interface: req.IfName, Network: req.Network,
		PodUID: podUID(in.Pod, req), IPs: held, Created: metav1.NewTime(s.now())}
	recordCtx, cancel := context.WithDeadline(ctx, s.Window.SendBy(evidence))
	defer cancel()
	err = s.Endpoints.Mutate(recordCtx, key, func(ep *v1.Endpoint) bool {
		s.stampOwner(ep, in.Pod, req)
		ep.Status.Interfaces = append(withoutInterface(ep.Status.Interfaces, req.ContainerID, req.IfName), rec)
		return true
	})
	if err != nil {
		if !store.Unapplied(err) {
			// the write may have committed though its answer was lost: undoing the pool
			// commit could free an address the Endpoint now holds. Left as it is, an
			// address the Endpoint does not hold is an orphan the sweeper frees later.
			s.Log.Warn("recording the allocation had an unknown outcome; not rolling back", zap.String("pod", key.String()),
				zap.String("containerID", req.ContainerID), zap.Any("ips", held), zap.Error(err))
			return nil, &rpc.Error{Code: rpc.CodeTryAgainLater, Message: fmt.Sprintf("recording the allocation in Endpoint %s: %v; retry", key, err)}
		}
		rollback()
		switch {
		case apierrors.IsNotFound(err):
			return nil, badRequest("pod", "cannot record the allocation: namespace %q does not exist", key.Namespace)
		case apierrors.IsForbidden(err):
			return nil, badRequest("pod", "cannot record the allocation in namespace %q: %v", key.Namespace, err)
		}
		return nil, internal("recording the allocation in Endpoint %s: %v", key, err)
	}
	for _, ip := range held {
		s.Log.Info("allocated", zap.String("pod", key.String()), zap.String("containerID", req.ContainerID),
			zap.String("ifName", req.IfName), zap.String("pool", ip.Pool), zap.String("ip", ip.Address), zap.String("source", string(source)))
	}
	return s.response(ctx, in, held, views)
}

// selectionInput gathers the pod, namespace, node and pools, and the requested addresses
// by family (4, 6).
func (s *Service) selectionInput(ctx context.Context, req *rpc.AllocateRequest) (*selection.Input, map[int]netip.Addr, error) {
	pod, err := s.Cluster.Pod(ctx, req.Pod.Namespace, req.Pod.Name, req.Pod.UID)
	if err != nil {
		return nil, nil, &rpc.Error{Code: rpc.CodeTryAgainLater, Message: fmt.Sprintf("reading pod %s/%s: %v", req.Pod.Namespace, req.Pod.Name, err)}
	}
	if err := s.ownsSandbox(pod, req); err != nil {
		return nil, nil, err
	}
	ns, err := s.Cluster.Namespace(ctx, req.Pod.Namespace)
	if err != nil {
		return nil, nil, internal("reading namespace %s: %v", req.Pod.Namespace, err)
	}
	node, err := s.Cluster.Node(ctx)
	if err != nil {
		return nil, nil, internal("reading node %s: %v", s.Node, err)
	}
	pools, err := s.Cluster.Pools(ctx)
	if err != nil {
		return nil, nil, internal("listing pools: %v", err)
	}
	in := &selection.Input{Pod: pod, Namespace: ns, Node: node, IfName: req.IfName, Network: req.Network,
		NAD: selection.Families{IPv4: req.IPv4Pools, IPv6: req.IPv6Pools}, Pools: pools}
	if pod != nil { // a bad annotation fails before anything is allocated
		if in.PodAnnotations, err = v1.ParsePodAnnotations(pod.Annotations); err != nil {
			return nil, nil, badRequest("annotations", "pod %s/%s: %v", pod.Namespace, pod.Name, err)
		}
	}
	if ns != nil {
		in.NamespaceAnnotations, in.NamespaceAnnotationsErr = v1.ParseNamespaceAnnotations(ns.Annotations)
	}
	requested := map[int]netip.Addr{}
	for i, text := range req.RequestedIPs {
		addr, err := netip.ParseAddr(strings.Split(text, "/")[0])
		if err != nil {
			return nil, nil, badRequest("requestedIPs", "requested address %d %q (multus \"ips\") is not an IP address", i, text)
		}
		fam := 4
		if addr.Is6() && !addr.Is4In6() {
			fam = 6
		}
		if requested[fam].IsValid() {
			return nil, nil, badRequest("requestedIPs", "two IPv%d addresses requested (%s, %s): one per family", fam, requested[fam], addr)
		}
		requested[fam] = addr.Unmap()
	}
	return in, requested, nil
}

// ownsSandbox refuses an ADD that is not for the pod object as it is now on this node:
// a late ADD of an incarnation that was force-deleted, or of a pod bound elsewhere,
// would record the live pod's UID and this node against addresses the live pod does not
// use, and recycling would later judge the live pod's own record replaced and free it.
// (No pod at all is allowed: the allocation is recycled as pod-deleted.)
func (s *Service) ownsSandbox(pod *corev1.Pod, req *rpc.AllocateRequest) error {
	switch {
	case pod == nil:
		return nil
	case req.Pod.UID != "" && string(pod.UID) != req.Pod.UID:
		return &rpc.Error{Code: rpc.CodeBadRequest, Field: "pod",
			Message: fmt.Sprintf("ADD for pod %s/%s UID %s, but that pod is now UID %s: the sandbox belongs to an incarnation that is gone; refusing to allocate for it",
				pod.Namespace, pod.Name, req.Pod.UID, pod.UID)}
	case pod.Spec.NodeName != "" && pod.Spec.NodeName != s.Node:
		return &rpc.Error{Code: rpc.CodeBadRequest, Field: "pod",
			Message: fmt.Sprintf("ADD for pod %s/%s on node %s, but the pod is bound to node %s: refusing to allocate for a sandbox the pod does not use",
				pod.Namespace, pod.Name, s.Node, pod.Spec.NodeName)}
	}
	return nil
}

// allocateFrom tries the pools in order, skipping those whose affinity does not match or
// that are exhausted; the error lists every pool tried and why it was skipped.
func (s *Service) allocateFrom(ctx context.Context, in *selection.Input, field, family string, source selection.Source,
	names []string, want netip.Addr) (v1.EndpointIP, *allocator.PoolView, error) {
	byName := map[string]*v1.IPPool{}
	for i := range in.Pools {
		byName[in.Pools[i].Name] = &in.Pools[i]
	}
	var reasons []string
	kind := FailureNoEligiblePool // the worst cause across the pools tried
	worse := func(k string) {
		if failureRank[k] > failureRank[kind] {
			kind = k
		}
	}
	for _, name := range names {
		pool := byName[name]
		if pool == nil && source == selection.SourceAppPool {
			return v1.EndpointIP{}, nil, &failure{kind: FailureNoEligiblePool, err: &rpc.Error{Code: rpc.CodeTryAgainLater, Field: "annotations",
				Message: fmt.Sprintf("application pool %s is not created yet (the controller carves it from the Subnet); retrying", name)}}
		}
		if pool == nil {
			reasons = append(reasons, name+": no such IPPool")
			continue
		}
		if ok, why := selection.Eligible(pool, in); !ok {
			reasons = append(reasons, name+": "+why)
			continue
		}
		var grant store.Grant
		var err error
		if want.IsValid() {
			grant, err = s.Pools.AllocateExact(ctx, name, want)
		} else {
			grant, err = s.Pools.Allocate(ctx, name)
		}
		if err == nil {
			view := grant.Pool
			ip := v1.EndpointIP{Address: grant.Addr.String(), Pool: name, PoolUID: grant.PoolUID, Vlan: view.Vlan}
			if view.Gateway.IsValid() {
				ip.Gateway = view.Gateway.String()
			}
			return ip, view, nil
		}
		switch {
		case errors.Is(err, allocator.ErrExhausted):
			worse(FailureExhausted)
			reasons = append(reasons, name+": exhausted")
		case errors.Is(err, store.ErrPoolNotFound):
			reasons = append(reasons, name+": no such IPPool")
		case errors.Is(err, store.ErrPoolDeleting):
			reasons = append(reasons, name+": being deleted")
		case errors.Is(err, store.ErrPoolUnprotected):
			worse(FailurePoolUnusable)
			reasons = append(reasons, err.Error())
		case errors.As(err, new(*store.UnusableError)):
			// a corrupt pool fails only itself: say what is wrong and how to fix it, on
			// the pool too (the recorder folds repeats), and move on to the next candidate
			worse(FailurePoolUnusable)
			reasons = append(reasons, err.Error())
			s.poolEvent(ctx, name, corev1.EventTypeWarning, "PoolUnusable", "%v", err)
		case apierrors.IsConflict(err):
			worse(FailureConflicts)
			reasons = append(reasons, name+": "+err.Error())
		default:
			worse(FailureAPIError)
			reasons = append(reasons, name+": "+err.Error())
		}
	}
	what := "no " + family + " address"
	if want.IsValid() {
		what = "requested address " + want.String() + " not available"
	}
	return v1.EndpointIP{}, nil, &failure{kind: kind, err: &rpc.Error{Code: rpc.CodeNoAddress, Field: field,
		Message: fmt.Sprintf("%s for %s from %s [%s]", what, in.IfName, source, strings.Join(reasons, "; "))}}
}

// predecessor finds the attachment this ADD takes over instead of allocating: on the same
// interface and network, made for
//   - this very pod by an earlier sandbox: the kubelet runs one sandbox per pod and makes
//     a new one only once the old is stopped, so the old one is gone, whether its DEL
//     reached ipamd (a StatefulSet pod's then stay, detached) or was lost;
//   - a StatefulSet pod's predecessor under the same name (another UID): the set
//     recreates a pod only once the old object is gone, and the successor keeps the
//     addresses on any node their pool reaches.
func predecessor(ep *v1.Endpoint, pod *corev1.Pod, req *rpc.AllocateRequest) *v1.EndpointInterface {
	if ep == nil || pod == nil {
		return nil
	}
	sts := ownerKind(pod) == "StatefulSet"
	for i := range ep.Status.Interfaces {
		itf := &ep.Status.Interfaces[i]
		if itf.Interface != req.IfName || itf.Network != req.Network {
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
// only the Endpoint learns the new owner (and node).
func (s *Service) inherit(ctx context.Context, key client.ObjectKey, in *selection.Input, req *rpc.AllocateRequest,
	old *v1.EndpointInterface) (*rpc.AllocateResponse, error) {
	prev := *old
	var ips []v1.EndpointIP
	err := s.Endpoints.Mutate(ctx, key, func(ep *v1.Endpoint) bool {
		for i := range ep.Status.Interfaces {
			itf := &ep.Status.Interfaces[i]
			if itf.ContainerID == prev.ContainerID && itf.Interface == prev.Interface && itf.PodUID == prev.PodUID {
				itf.ContainerID, itf.PodUID, itf.Created = req.ContainerID, string(in.Pod.UID), metav1.NewTime(s.now())
				itf.Detached = nil
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
	return s.response(ctx, in, ips, nil)
}

func (s *Service) stampOwner(ep *v1.Endpoint, pod *corev1.Pod, req *rpc.AllocateRequest) {
	ep.Status.Node = s.Node
	ep.Status.PodUID = podUID(pod, req)
	if pod != nil {
		ep.Status.OwnerKind, ep.Status.OwnerName = ownerKind(pod), ownerName(pod)
	}
}

// releaseIPs rolls back pool commits whose Endpoint write certainly did not happen;
// evidence is when the first of those commits was sent.
func (s *Service) releaseIPs(ctx context.Context, ips []v1.EndpointIP, evidence time.Time) {
	for _, ip := range ips {
		addr, _ := netip.ParsePrefix(ip.Address)
		f := store.Free{Pool: ip.Pool, PoolUID: ip.PoolUID, Addr: addr.Addr(), Evidence: evidence}
		if err := s.Pools.Release(ctx, f); err != nil {
			s.Log.Error("rollback release failed; the address is an orphan until GC", zap.String("pool", ip.Pool), zap.String("ip", ip.Address), zap.Error(err))
		}
	}
}

// response adds routes by level: the Subnet holding each pool, then the pool, then the
// pod's routes annotation for this interface; a later level wins per destination. views
// holds the pools a fresh allocation just committed, as the commit parsed them; a pool
// not in it (an address held already) is read from the cache.
func (s *Service) response(ctx context.Context, in *selection.Input, ips []v1.EndpointIP, views map[string]*allocator.PoolView) (*rpc.AllocateResponse, error) {
	var alloc netplan.Allocation
	var subnetRoutes, poolRoutes []netplan.Route
	subnets, err := s.Cluster.Subnets(ctx)
	if err != nil {
		return nil, internal("listing Subnets: %v", err)
	}
	for _, ip := range ips {
		addr := netplan.Address{Pool: ip.Pool, Vlan: ip.Vlan}
		if addr.Prefix, err = netip.ParsePrefix(ip.Address); err != nil {
			return nil, internal("Endpoint address %q of pool %s: %v", ip.Address, ip.Pool, err)
		}
		if ip.Gateway != "" {
			if addr.Gateway, err = netip.ParseAddr(ip.Gateway); err != nil {
				return nil, internal("Endpoint gateway %q of pool %s: %v", ip.Gateway, ip.Pool, err)
			}
		}
		alloc.Addresses = append(alloc.Addresses, addr)
		pool := views[ip.Pool]
		if pool == nil {
			if pool, err = s.Pools.View(ctx, ip.Pool); err != nil {
				continue
			}
		}
		poolRoutes = append(poolRoutes, pool.Routes...)
		if sub := enclosingSubnet(subnets, pool.Prefix); sub != nil {
			for i, r := range sub.Spec.Routes {
				route, err := netplan.ParseRoute(r.Dst, r.Gw, fmt.Sprintf("Subnet %s spec.routes[%d]", sub.Name, i))
				if err != nil {
					return nil, badRequest("routes", "%v", err)
				}
				subnetRoutes = append(subnetRoutes, route)
			}
		}
	}
	alloc.Routes = netplan.Merge(subnetRoutes, poolRoutes, podRoutesFor(in))
	return rpc.NewAllocateResponse(alloc), nil
}

// podRoutesFor returns the routes annotation's routes for the interface, parsed when the
// request began.
func podRoutesFor(in *selection.Input) []netplan.Route {
	var out []netplan.Route
	for _, r := range in.PodAnnotations.RoutesFor(in.IfName) {
		out = append(out, netplan.Route{Dst: r.Dst, Gw: r.Gw})
	}
	return out
}

// enclosingSubnet returns the most specific Subnet whose CIDR holds the pool's.
func enclosingSubnet(subnets []v1.Subnet, pool netip.Prefix) *v1.Subnet {
	var best *v1.Subnet
	bestBits := -1
	for i := range subnets {
		p, err := netip.ParsePrefix(subnets[i].Spec.Subnet)
		if err != nil || p.Bits() > pool.Bits() || !p.Contains(pool.Addr()) || p.Bits() <= bestBits {
			continue
		}
		best, bestBits = &subnets[i], p.Bits()
	}
	return best
}

func podUID(pod *corev1.Pod, req *rpc.AllocateRequest) string {
	if pod != nil {
		return string(pod.UID)
	}
	return req.Pod.UID
}

func ownerKind(pod *corev1.Pod) string {
	if ref := metav1.GetControllerOf(pod); ref != nil {
		return ref.Kind
	}
	return ""
}

func ownerName(pod *corev1.Pod) string {
	if ref := metav1.GetControllerOf(pod); ref != nil {
		return ref.Name
	}
	return ""
}
