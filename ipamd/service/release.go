package service

import (
	"context"
	"errors"
	"net/netip"
	"time"

	"go.uber.org/zap"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/core/recycle"
	"github.com/underpool/underpool/ipamd/store"
	"github.com/underpool/underpool/rpc"
)

// Release frees an attachment's addresses. Unknown attachments succeed.
func (s *Service) Release(ctx context.Context, req *rpc.ReleaseRequest) (err error) {
	start := time.Now()
	defer s.Metrics.begin("release")()
	defer func() { s.Metrics.observe("release", start, err) }()
	if req.ContainerID == "" {
		return badRequest("containerID", "containerID is empty: the runtime's CNI_CONTAINERID must be set")
	}
	keys := []client.ObjectKey{}
	if req.Pod.Namespace != "" && req.Pod.Name != "" {
		keys = append(keys, client.ObjectKey{Namespace: req.Pod.Namespace, Name: req.Pod.Name})
	}
	// the index also finds records under another key (no pod name given, or a recreated pod)
	others, err := s.Endpoints.ByContainer(ctx, req.ContainerID)
	if err != nil {
		return internal("looking up container %s: %v", req.ContainerID, err)
	}
	for _, ep := range others {
		if k := client.ObjectKeyFromObject(&ep); len(keys) == 0 || k != keys[0] {
			keys = append(keys, k)
		}
	}
	conflicts := map[string]string{}
	for _, c := range req.Conflicts {
		addr, err := netip.ParseAddr(c.IP)
		if err != nil {
			return badRequest("conflicts", "conflict address %q is not an IP", c.IP)
		}
		conflicts[addr.String()] = c.MAC
	}
	for i, key := range keys {
		match := func(itf *v1.EndpointInterface) bool {
			return itf.ContainerID == req.ContainerID && (req.IfName == "" || itf.Interface == req.IfName)
		}
		if i == 0 && req.Pod.Namespace != "" && req.Pod.Name != "" {
			// the pod's own Endpoint may hold what an import recorded without a sandbox ID
			if imported := s.unknownSandbox(ctx, key, req); imported != nil {
				byContainer := match
				match = func(itf *v1.EndpointInterface) bool { return byContainer(itf) || imported(itf) }
			}
		}
		if err := s.detach(ctx, key, match, conflicts); err != nil {
			return err
		}
	}
	return nil
}

// detach ends attachments whose sandbox is going (CNI DEL, or CNI GC for what the runtime
// no longer has). A StatefulSet pod's addresses stay held, marked detached, while its set
// still wants the ordinal: the pod that follows under that name (after a rolling restart,
// a drain, an eviction) takes them over on its ADD. Anything else is released. Addresses
// found in conflict on the wire are never kept.
func (s *Service) detach(ctx context.Context, key client.ObjectKey, match func(*v1.EndpointInterface) bool, conflicts map[string]string) error {
	unlock := s.locks.lock(key.String())
	defer unlock()
	keep, err := s.keptForSuccessor(ctx, key)
	if err != nil {
		return err
	}
	if !keep || len(conflicts) > 0 {
		return s.releaseLocked(ctx, key, match, conflicts)
	}
	var detached []v1.EndpointInterface
	now := metav1.NewTime(s.now())
	err = s.Endpoints.Mutate(ctx, key, func(ep *v1.Endpoint) bool {
		detached = detached[:0]
		for i := range ep.Status.Interfaces {
			if itf := &ep.Status.Interfaces[i]; match(itf) && itf.Detached == nil {
				itf.Detached = &now
				detached = append(detached, *itf)
			}
		}
		return len(detached) > 0
	})
	if err != nil {
		return internal("keeping %s's addresses for its successor: %v", key, err)
	}
	for _, itf := range detached {
		s.Log.Info("sandbox gone; addresses kept for the StatefulSet pod that follows", zap.String("pod", key.String()),
			zap.String("containerID", itf.ContainerID), zap.String("ifName", itf.Interface), zap.Any("ips", itf.IPs))
	}
	return nil
}

// keptForSuccessor reports whether the pod named by key is a StatefulSet pod whose set
// (read from the API) still wants its ordinal. When the set cannot be read, the addresses
// are kept: keeping costs at most a delay until recycling, freeing could cost a duplicate.
func (s *Service) keptForSuccessor(ctx context.Context, key client.ObjectKey) (bool, error) {
	ep, err := s.Endpoints.Get(ctx, key)
	if err == nil && ep == nil { // written a moment ago, perhaps: the cache is no evidence
		ep, err = s.Endpoints.Fresh(ctx, key)
	}
	if err != nil {
		return false, internal("reading Endpoint %s: %v", key, err)
	}
	if ep == nil || ep.Status.OwnerKind != "StatefulSet" {
		return false, nil
	}
	wanted, err := s.ordinalWanted(ctx, ep)
	if err != nil {
		s.Log.Warn("cannot read the StatefulSet; keeping the addresses for now", zap.String("pod", key.String()), zap.Error(err))
		return true, nil
	}
	return wanted, nil
}

// ordinalWanted reads the Endpoint's StatefulSet from the API and says whether it still
// wants the pod's ordinal (honouring spec.ordinals.start).
func (s *Service) ordinalWanted(ctx context.Context, ep *v1.Endpoint) (bool, error) {
	ordinals, exists, err := s.Cluster.StatefulSetOrdinals(ctx, ep.Namespace, ep.Status.OwnerName)
	if err != nil {
		return false, err
	}
	n, err := recycle.OrdinalOf(ep.Name, ep.Status.OwnerName)
	return exists && err == nil && ordinals.Wants(n), nil
}

// releaseFrom drops the matching records from one Endpoint, then frees their addresses.
func (s *Service) releaseFrom(ctx context.Context, key client.ObjectKey, match func(*v1.EndpointInterface) bool) error {
	unlock := s.locks.lock(key.String())
	defer unlock()
	return s.releaseLocked(ctx, key, match, nil)
}

// releaseLocked drops the matching records from one Endpoint, then frees their addresses;
// addresses found in conflict on the wire (address -> the MAC that answered) are
// quarantined instead. The caller holds the pod's lock. Only what the successful,
// resourceVersion-guarded write removed is freed: a record someone else removed first
// (a second DEL, another node's recycling) is not freed twice.
func (s *Service) releaseLocked(ctx context.Context, key client.ObjectKey, match func(*v1.EndpointInterface) bool, conflicts map[string]string) error {
	var removed []v1.EndpointInterface
	// taken before the write that removes the records is sent: the frees below are sent
	// only within the first half of the commit window after it (docs/design.md)
	evidence := s.now()
	err := s.Endpoints.Mutate(ctx, key, func(ep *v1.Endpoint) bool {
		removed = removed[:0]
		kept := ep.Status.Interfaces[:0:0]
		for i := range ep.Status.Interfaces {
			if match(&ep.Status.Interfaces[i]) {
				removed = append(removed, ep.Status.Interfaces[i])
			} else {
				kept = append(kept, ep.Status.Interfaces[i])
			}
		}
		ep.Status.Interfaces = kept
		return len(removed) > 0
	})
	if err != nil {
		return internal("updating Endpoint %s: %v", key, err)
	}
	for _, itf := range removed {
		for _, ip := range itf.IPs {
			addr, perr := netip.ParsePrefix(ip.Address)
			if perr != nil {
				continue
			}
			f := store.Free{Pool: ip.Pool, PoolUID: ip.PoolUID, Addr: addr.Addr(), Evidence: evidence}
			mac, conflict := conflicts[addr.Addr().String()]
			if !conflict {
				s.freeAfterAnswer(ctx, key, itf, ip, f)
				continue
			}
			if err := s.quarantine(ctx, f, mac); err != nil && !errors.Is(err, store.ErrWindowClosed) {
				return internal("quarantining %s in pool %s: %v", ip.Address, ip.Pool, err)
			} else if err != nil {
				s.leftForSweeper(key, ip, err)
			}
		}
	}
	return nil
}

// freeAfterAnswer frees an address whose record the caller's write removed, without
// making the caller wait for it: a DEL is done once its record is gone (one write), and an
// address allocated a moment longer, held by nobody, is handed to nobody. The free is
// planned within the first half of the commit window after its evidence like any other
// (store.Free), and when it fails, or its window closes, the address stays allocated and
// unheld for the orphan sweeper; answering the DEL with that error would change nothing,
// since a repeated DEL finds the record gone and frees nothing. Settle waits for these.
func (s *Service) freeAfterAnswer(ctx context.Context, key client.ObjectKey, itf v1.EndpointInterface, ip v1.EndpointIP, f store.Free) {
	// queued now, so an ADD this node serves next finds the free ahead of it; the
	// request's context ends with its answer, the free is bounded by its window
	wait := s.Pools.ReleaseQueued(context.WithoutCancel(ctx), f)
	s.frees.Add(1)
	go func() {
		defer s.frees.Done()
		if err := wait(); err != nil {
			s.leftForSweeper(key, ip, err)
			return
		}
		s.Log.Info("released", zap.String("pod", key.String()), zap.String("containerID", itf.ContainerID),
			zap.String("ifName", itf.Interface), zap.String("pool", ip.Pool), zap.String("ip", ip.Address))
	}()
}

// leftForSweeper logs a free that was not made: the record is gone, so the sandbox's
// teardown succeeded; the address stays allocated, unheld, and the orphan sweeper frees
// it safely.
func (s *Service) leftForSweeper(key client.ObjectKey, ip v1.EndpointIP, err error) {
	msg := "free failed; left for the orphan sweeper"
	if errors.Is(err, store.ErrWindowClosed) {
		msg = "free not sent within the commit window; left for the orphan sweeper"
	}
	s.Log.Warn(msg, zap.String("pod", key.String()), zap.String("pool", ip.Pool), zap.String("ip", ip.Address), zap.Error(err))
}

// Settle waits until every free, and every delete of an emptied Endpoint, sent after its
// DEL answered has been made or given up (freeAfterAnswer, store.Endpoints): for
// shutdown, and for tests that read a pool right after a DEL.
func (s *Service) Settle() {
	s.frees.Wait()
	s.Endpoints.Settle()
}

// GC releases this node's attachments of a network that the runtime no longer has. Any
// root process on the node may ask (the socket is the only check), and a runtime that lost
// its state sends an empty valid list, so GC is bounded: an attachment younger than
// GCMinAge is never released (its ADD may still be in flight, or the caller's list was
// taken before it), and a GC that would release more than GCMaxShare of the network's
// attachments on this node at once is refused unless forced. Refusing costs little: an
// attachment whose pod is gone is still recycled (Recycle), on evidence from the API.
func (s *Service) GC(ctx context.Context, req *rpc.GCRequest, force bool) (*rpc.GCResponse, error) {
	defer s.Metrics.begin("gc")()
	if req.Network == "" {
		return nil, badRequest("network", "network is empty: GC needs the CNI network name")
	}
	// ages are judged at the request's arrival, not after the reads below: an
	// attachment made after the runtime listed its valid ones is never stale, however
	// long this request waits before it looks
	now := s.now()
	valid := map[rpc.Attachment]bool{}
	for _, a := range req.Valid {
		valid[a] = true
	}
	eps, err := s.Endpoints.OnNode(ctx, s.Node)
	if err != nil {
		return nil, internal("%v", err)
	}
	stale := func(itf *v1.EndpointInterface) bool {
		return itf.Network == req.Network && itf.Detached == nil &&
			!valid[rpc.Attachment{ContainerID: itf.ContainerID, IfName: itf.Interface}] &&
			now.Sub(itf.Created.Time) >= s.GCMinAge
	}
	total, young, doomed := 0, 0, 0
	for i := range eps {
		for j := range eps[i].Status.Interfaces {
			itf := &eps[i].Status.Interfaces[j]
			if itf.Network != req.Network {
				continue
			}
			total++
			if stale(itf) {
				doomed++
			} else if itf.Detached == nil && !valid[rpc.Attachment{ContainerID: itf.ContainerID, IfName: itf.Interface}] {
				young++
			}
		}
	}
	if young > 0 {
		s.Log.Info("GC leaves attachments younger than the minimum age", zap.String("network", req.Network),
			zap.Int("young", young), zap.Duration("minAge", s.GCMinAge))
	}
	if err := s.gcShareAllowed(req.Network, doomed, total, force); err != nil {
		return nil, err
	}
	resp := &rpc.GCResponse{Released: []rpc.Attachment{}}
	for _, ep := range eps {
		for i := range ep.Status.Interfaces {
			if itf := &ep.Status.Interfaces[i]; stale(itf) {
				resp.Released = append(resp.Released, rpc.Attachment{ContainerID: itf.ContainerID, IfName: itf.Interface})
			}
		}
		if err := s.detach(ctx, client.ObjectKeyFromObject(&ep), stale, nil); err != nil {
			return nil, err
		}
	}
	s.Metrics.GCReleased.Add(float64(len(resp.Released)))
	return resp, nil
}

// gcShareAllowed refuses a GC that would release more than GCMaxShare of a network's
// attachments on this node, unless forced. One attachment is always allowed: a node with
// a single pod of a network could otherwise never be collected by GC.
func (s *Service) gcShareAllowed(network string, doomed, total int, force bool) error {
	if s.GCMaxShare <= 0 || doomed <= 1 || float64(doomed) <= s.GCMaxShare*float64(total) {
		return nil
	}
	if force {
		s.Log.Warn("forced GC releases more than the allowed share", zap.String("network", network),
			zap.Int("releasing", doomed), zap.Int("attachments", total), zap.Float64("maxShare", s.GCMaxShare))
		return nil
	}
	s.Log.Warn("GC refused: it would release too large a share of the network's attachments at once",
		zap.String("network", network), zap.Int("releasing", doomed), zap.Int("attachments", total), zap.Float64("maxShare", s.GCMaxShare))
	return badRequest("valid", "GC of network %s would release %d of its %d attachments on node %s, more than the allowed share %.0f%% (--gc-max-share): refused, nothing released; a runtime that lost its state sends too short a valid list. Attachments of gone pods are recycled anyway; to release them now, repeat the request with force (POST %s?force=true)",
		network, doomed, total, s.Node, s.GCMaxShare*100, rpc.PathGC)
}
