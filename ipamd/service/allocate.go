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

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/core/allocator"
	"github.com/underpool/underpool/core/selection"
	"github.com/underpool/underpool/ipamd/store"
	"github.com/underpool/underpool/rpc"
)

// Allocate gives an attachment its addresses, or returns the ones it already holds. Under
// the pod's lock it runs four phases, the first that answers ends it: the existing
// attachment (attached), the takeover of a predecessor's addresses (takeOver), the
// per-family allocation (allocateFamilies), and recording that allocation in the
// Endpoint (record). The last two are where invariant 1 and the release protocol live.
func (s *Service) Allocate(ctx context.Context, req *rpc.AllocateRequest) (resp *rpc.AllocateResponse, err error) {
	start := time.Now()
	defer s.Metrics.begin("allocate")()
	defer func() { s.Metrics.observeAllocate(start, err) }()
	if e := validateAllocate(req); e != nil {
		return nil, e
	}
	arrival := s.order.arrive()
	defer s.order.leave()
	in, requested, err := s.selectionInput(ctx, req)
	if err != nil {
		return nil, err
	}
	defer func() { s.allocationFailed(in, err) }()
	candidates, source, err := selection.Candidates(in)
	if err != nil {
		return nil, badRequest("pools", "%v", err)
	}
	a := attachment{key: client.ObjectKey{Namespace: req.Pod.Namespace, Name: req.Pod.Name}, in: in, req: req, arrival: arrival}
	unlock := s.locks.lock(a.key.String())
	defer unlock()
	ep, err := s.endpoint(ctx, a)
	if err != nil {
		return nil, err
	}
	if rec, err := attached(ep, a); rec != nil || err != nil {
		if err != nil {
			return nil, err
		}
		return s.response(ctx, in, rec.IPs, nil)
	}
	if err := s.notOvertaken(a); err != nil {
		return nil, err
	}
	if ips, took, err := s.takeOver(ctx, a, ep); took || err != nil {
		if err != nil {
			return nil, err
		}
		s.order.record(a.attachmentKey(), a.arrival)
		return s.response(ctx, in, ips, nil)
	}
	// taken before the first pool commit is sent: the Endpoint write that records the
	// allocation, and any rollback, are sent only within the first half of the commit
	// window after it (docs/design.md, the release protocol)
	evidence := s.now()
	held, views, evidence, err := s.allocateFamilies(ctx, a, candidates, source, requested, evidence)
	if err != nil {
		return nil, err
	}
	if err := s.record(ctx, a, held, evidence); err != nil {
		return nil, err
	}
	s.order.record(a.attachmentKey(), a.arrival)
	for _, ip := range held {
		s.Pools.Served(ctx, ip.Pool)
		s.Log.Info("allocated", zap.String("pod", a.key.String()), zap.String("containerID", req.ContainerID),
			zap.String("ifName", req.IfName), zap.String("pool", ip.Pool), zap.String("ip", ip.Address), zap.String("source", string(source)))
	}
	return s.response(ctx, in, held, views)
}

// stillThePod confirms, on a fresh read, that the request is for the pod as it is now when
// its Endpoint was last stamped by another incarnation: the informer may still show an
// incarnation that was force-deleted and made again, and a late ADD of it would pass
// ownsSandbox on that stale copy, then take the live pod's attachment over (a StatefulSet
// pod takes any record on its interface) or stamp the live pod's Endpoint with a dead UID
// and this node. Rare (a StatefulSet successor, a pod made again), so one GET is cheap.
// ep is the API's copy.
func (s *Service) stillThePod(ctx context.Context, a attachment, ep *v1.Endpoint) error {
	if ep == nil || ep.Status.PodUID == "" || ep.Status.PodUID == podUID(a.in.Pod, a.req) {
		return nil
	}
	return s.confirmThePod(ctx, a)
}

// confirmThePod reads the pod from the API and refuses the request unless it is for the
// pod as it is now, on this node.
func (s *Service) confirmThePod(ctx context.Context, a attachment) error {
	pod, err := s.Cluster.PodFresh(ctx, a.key.Namespace, a.key.Name)
	if err != nil {
		return &rpc.Error{Code: rpc.CodeTryAgainLater, Message: fmt.Sprintf("reading pod %s: %v", a.key, err)}
	}
	return s.ownsSandbox(pod, a.req)
}

// attachment is what every phase of Allocate looks at: the pod's Endpoint key, the
// selection input read once for the request, and the request.
type attachment struct {
	key client.ObjectKey
	in  *selection.Input
	req *rpc.AllocateRequest
	// arrival numbers the request among this process' ADDs (order.go)
	arrival uint64
}

// endpoint reads the pod's Endpoint from the cache, which holds this node's Endpoints
// only: a StatefulSet pod's predecessor may have run, and left its addresses detached,
// on another node, so a StatefulSet pod the cache knows nothing of is read from the API.
func (s *Service) endpoint(ctx context.Context, a attachment) (*v1.Endpoint, error) {
	ep, err := s.Endpoints.Get(ctx, a.key)
	if err == nil && ep == nil && a.in.Pod != nil && ownerKind(a.in.Pod) == "StatefulSet" {
		ep, err = s.Endpoints.Fresh(ctx, a.key)
	}
	if err != nil {
		return nil, internal("reading Endpoint %s: %v", a.key, err)
	}
	return ep, nil
}

// attached is the existing attachment, same container and interface: a repeated ADD (a
// runtime's retry) or CHECK's lookup gets what it holds and nothing is allocated. A
// detached one (its DEL ran) answers only a lookup; a new ADD of it is a takeover. A
// lookup that finds nothing is "not held": a lookup never allocates.
func attached(ep *v1.Endpoint, a attachment) (*v1.EndpointInterface, error) {
	req := a.req
	if rec := findInterface(ep, req.ContainerID, req.IfName); rec != nil && (rec.Detached == nil || req.LookupOnly) {
		return rec, nil
	}
	if req.LookupOnly {
		return nil, &rpc.Error{Code: rpc.CodeNotHeld, Field: "containerID",
			Message: fmt.Sprintf("ipamd holds no address for container %s interface %s (pod %s)", req.ContainerID, req.IfName, a.key)}
	}
	return nil, nil
}

// allocateFamilies takes one address per family from the first candidate pool that has
// one (multus's requested address when it asked for one). Until record has written
// them, nothing else knows of these pool commits: a family that fails takes back what
// the families before it committed, under the evidence taken before the first commit.
// The evidence it returns is the earliest of the request's and those of addresses
// allocated before the request (store.Grant.Evidence): record keeps to its deadline.
func (s *Service) allocateFamilies(ctx context.Context, a attachment, candidates selection.Families, source selection.Source,
	requested map[int]netip.Addr, evidence time.Time) ([]v1.EndpointIP, map[string]*allocator.PoolView, time.Time, error) {
	var held []v1.EndpointIP
	// the pools as the commit parsed them: the response needs their routes, and parsing
	// each pool again from the cache after the commit was pure waste
	views := map[string]*allocator.PoolView{}
	rollback := func() { s.releaseIPs(ctx, held, evidence) }
	for _, fam := range []struct {
		field, label string
		pools        []string
		want         netip.Addr
	}{{"ipv4Pools", "IPv4", candidates.IPv4, requested[4]}, {"ipv6Pools", "IPv6", candidates.IPv6, requested[6]}} {
		if len(fam.pools) == 0 {
			if fam.want.IsValid() {
				rollback()
				return nil, nil, evidence, badRequest("requestedIPs", "requested %s but %s names no %s pool for %s", fam.want, source, fam.label, a.req.IfName)
			}
			continue
		}
		ip, view, since, err := s.allocateFrom(ctx, a.in, fam.field, fam.label, source, fam.pools, fam.want)
		if err != nil {
			rollback()
			return nil, nil, evidence, err
		}
		if !since.IsZero() && since.Before(evidence) {
			evidence = since
		}
		held = append(held, ip)
		views[ip.Pool] = view
	}
	return held, views, evidence, nil
}

// record writes the allocation into the pod's Endpoint, the write that makes the pool
// commits held. It is sent only before the record deadline the release protocol sets
// from evidence (s.Window.SendBy), and the pool commits are rolled back only when the
// write certainly did not apply (store.Unapplied).
func (s *Service) record(ctx context.Context, a attachment, held []v1.EndpointIP, evidence time.Time) error {
	key, req := a.key, a.req
	rec := v1.EndpointInterface{ContainerID: req.ContainerID, Interface: req.IfName, Network: req.Network,
		PodUID: podUID(a.in.Pod, req), IPs: held, Created: metav1.NewTime(s.now())}
	recordCtx, cancel := context.WithDeadline(ctx, s.Window.SendBy(evidence))
	defer cancel()
	// an Endpoint stamped by another incarnation is restamped only once the API confirms
	// this request is for the pod as it is now (stillThePod); nothing is written before
	confirmed := false
	for {
		stampedBy := ""
		err := s.Endpoints.Mutate(recordCtx, key, func(ep *v1.Endpoint) bool {
			stampedBy = ""
			if !confirmed && ep.Status.PodUID != "" && ep.Status.PodUID != rec.PodUID {
				stampedBy = ep.Status.PodUID
				return false
			}
			s.stampOwner(ep, a.in.Pod, req)
			ep.Status.Interfaces = append(withoutInterface(ep.Status.Interfaces, req.ContainerID, req.IfName), rec)
			return true
		})
		if err != nil || stampedBy == "" {
			return s.recorded(ctx, a, held, evidence, err)
		}
		if err := s.confirmThePod(ctx, a); err != nil {
			s.releaseIPs(ctx, held, evidence) // nothing was written: the record never existed
			return err
		}
		confirmed = true
	}
}

// recorded handles the outcome of the write that records an allocation: a write the API
// refused is rolled back, one whose outcome is unknown is not (its address may be held).
func (s *Service) recorded(ctx context.Context, a attachment, held []v1.EndpointIP, evidence time.Time, err error) error {
	key, req := a.key, a.req
	if err == nil {
		return nil
	}
	if !store.Unapplied(err) {
		// the write may have committed though its answer was lost: undoing the pool
		// commit could free an address the Endpoint now holds. Left as it is, an
		// address the Endpoint does not hold is an orphan the sweeper frees later.
		s.Log.Warn("recording the allocation had an unknown outcome; not rolling back", zap.String("pod", key.String()),
			zap.String("containerID", req.ContainerID), zap.Any("ips", held), zap.Error(err))
		return &rpc.Error{Code: rpc.CodeTryAgainLater, Message: fmt.Sprintf("recording the allocation in Endpoint %s: %v; retry", key, err)}
	}
	s.releaseIPs(ctx, held, evidence)
	switch {
	case apierrors.IsNotFound(err):
		return badRequest("pod", "cannot record the allocation: namespace %q does not exist", key.Namespace)
	case apierrors.IsForbidden(err):
		return badRequest("pod", "cannot record the allocation in namespace %q: %v", key.Namespace, err)
	}
	return internal("recording the allocation in Endpoint %s: %v", key, err)
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
		if in.WorkloadAbove, err = s.workloadAbove(ctx, in); err != nil {
			return nil, nil, err
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
	names []string, want netip.Addr) (v1.EndpointIP, *allocator.PoolView, time.Time, error) {
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
			return v1.EndpointIP{}, nil, time.Time{}, &failure{kind: FailureNoEligiblePool, err: &rpc.Error{Code: rpc.CodeTryAgainLater, Field: "annotations",
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
		allocate := func() (store.Grant, error) {
			if want.IsValid() {
				return s.Pools.AllocateExact(ctx, name, want)
			}
			return s.Pools.Allocate(ctx, name)
		}
		grant, err := allocate()
		if err != nil && s.Pools.AwaitPrefetches(ctx, err) {
			grant, err = allocate() // once: what another node held ready is taken or freed now
		}
		if err == nil {
			view := grant.Pool
			ip := v1.EndpointIP{Address: grant.Addr.String(), Pool: name, PoolUID: grant.PoolUID, Vlan: view.Vlan}
			if view.Gateway.IsValid() {
				ip.Gateway = view.Gateway.String()
			}
			return ip, view, grant.Evidence, nil
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
	return v1.EndpointIP{}, nil, time.Time{}, &failure{kind: kind, err: &rpc.Error{Code: rpc.CodeNoAddress, Field: field,
		Message: fmt.Sprintf("%s for %s from %s [%s]", what, in.IfName, source, strings.Join(reasons, "; "))}}
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
