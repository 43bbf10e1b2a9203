package service

import (
	"context"
	"errors"
	"maps"
	"net/netip"
	"slices"
	"time"

	"go.uber.org/zap"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/ipamd/store"
)

// RemarkRetryInterval is how often pools whose re-mark failed at startup are tried again
// (each allocation from such a pool tries too).
var RemarkRetryInterval = 10 * time.Second

// Reconcile marks in their pools every address this node's Endpoints hold, then opens the
// service. Serving before this could hand out an address whose pool commit was lost.
// Addresses are grouped by pool and re-marked in one commit per pool, so a node with
// thousands of attachments is ready after a handful of writes.
//
// A pool that cannot be re-marked (its spec does not parse, its status is corrupt, the
// write fails) does not stop the node: it is skipped with a Warning event and a metric,
// its addresses stay pending in the store, and it hands nothing out until a later commit
// marks them (every allocation from it retries, and so does a loop every
// RemarkRetryInterval). Every other pool is served at once.
func (s *Service) Reconcile(ctx context.Context) error {
	eps, err := s.Endpoints.OnNode(ctx, s.Node)
	if err != nil {
		return err
	}
	byPool := map[string][]netip.Addr{}
	held := 0
	for _, ep := range eps {
		for _, itf := range ep.Status.Interfaces {
			for _, ip := range itf.IPs {
				addr, err := netip.ParsePrefix(ip.Address)
				if err != nil {
					s.Log.Warn("endpoint holds an unparsable address", zap.String("endpoint", ep.Namespace+"/"+ep.Name), zap.String("ip", ip.Address))
					continue
				}
				held++
				byPool[ip.Pool] = append(byPool[ip.Pool], addr.Addr())
			}
		}
	}
	failed := 0
	// in name order: a restart re-marks the same way every time (the simulation replays it)
	for _, pool := range slices.Sorted(maps.Keys(byPool)) {
		addrs := byPool[pool]
		lost, err := s.Pools.Remark(ctx, pool, addrs)
		switch {
		case errors.Is(err, store.ErrPoolNotFound):
			s.Log.Warn("endpoints hold addresses of a pool that is gone", zap.String("pool", pool), zap.Int("addresses", len(addrs)))
		case err != nil:
			failed++
			s.Log.Error("pool skipped: its held addresses could not be re-marked, so it hands nothing out until they are",
				zap.String("pool", pool), zap.Int("addresses", len(addrs)), zap.Error(err))
			s.poolEvent(ctx, pool, corev1.EventTypeWarning, "RemarkFailed",
				"ipamd on node %s cannot re-mark the %d addresses its Endpoints hold in this pool, so it hands out nothing from it on that node until it can: %v",
				s.Node, len(addrs), err)
		case len(lost) > 0:
			s.Log.Warn("pool had lost addresses endpoints hold; marked them again", zap.String("pool", pool),
				zap.Int("count", len(lost)), zap.Stringer("first", lost[0]))
		}
	}
	protected := s.protectEndpoints(ctx, eps)
	s.Log.Info("reconciled this node's endpoints", zap.Int("endpoints", len(eps)), zap.Int("addresses", held),
		zap.Int("pools", len(byPool)), zap.Int("poolsPendingRemark", failed), zap.Int("finalizersAdded", protected))
	s.ready.Store(true)
	if failed > 0 {
		go s.retryRemarks(ctx, RemarkRetryInterval)
	}
	return nil
}

// protectEndpoints gives the protection finalizer to this node's Endpoints that hold
// addresses without it: those written before the finalizer existed (every write since adds
// it), which a namespace deletion could otherwise drop while their pods still run, letting
// the sweeper free live addresses. Each is a guarded update (Mutate), so an Endpoint
// changed meanwhile is re-read, and one emptied meanwhile is left to the write that
// emptied it. One that is being deleted cannot be given a finalizer any more. A failure
// is logged and the next start tries again; it holds up nothing else.
func (s *Service) protectEndpoints(ctx context.Context, eps []v1.Endpoint) int {
	added := 0
	for i := range eps {
		if !needsProtection(&eps[i]) {
			continue
		}
		key := client.ObjectKeyFromObject(&eps[i])
		if eps[i].DeletionTimestamp != nil {
			s.Log.Warn("endpoint holds addresses without the protection finalizer and is being deleted; it cannot be protected any more",
				zap.String("endpoint", key.String()))
			continue
		}
		wrote := false
		err := s.Endpoints.Mutate(ctx, key, func(ep *v1.Endpoint) bool {
			wrote = ep.DeletionTimestamp == nil && needsProtection(ep)
			if wrote {
				controllerutil.AddFinalizer(ep, v1.EndpointProtection)
			}
			return wrote
		})
		if err != nil {
			s.Log.Warn("could not add the protection finalizer to an endpoint written before it existed; the next start retries",
				zap.String("endpoint", key.String()), zap.Error(err))
			continue
		}
		if wrote {
			added++
		}
	}
	return added
}

// needsProtection: the Endpoint holds an address and lacks the protection finalizer.
func needsProtection(ep *v1.Endpoint) bool {
	if controllerutil.ContainsFinalizer(ep, v1.EndpointProtection) {
		return false
	}
	for _, itf := range ep.Status.Interfaces {
		if len(itf.IPs) > 0 {
			return true
		}
	}
	return false
}

// retryRemarks re-marks pending pools every interval until none is left or ctx ends.
func (s *Service) retryRemarks(ctx context.Context, every time.Duration) {
	ticker := time.NewTicker(every)
	defer ticker.Stop()
	for len(s.Pools.PendingRemarks()) > 0 {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
		for pool, err := range s.Pools.RetryRemarks(ctx) {
			s.Log.Warn("pool still cannot be re-marked; it hands nothing out", zap.String("pool", pool), zap.Error(err))
		}
	}
}

// poolEvent records an event on a pool (by name: its object may be unreadable).
func (s *Service) poolEvent(ctx context.Context, name, kind, reason, format string, args ...any) {
	if s.Events == nil {
		return
	}
	obj := &v1.IPPool{TypeMeta: metav1.TypeMeta{APIVersion: v1.GroupVersion.String(), Kind: "IPPool"}, ObjectMeta: metav1.ObjectMeta{Name: name}}
	if pools, err := s.Cluster.Pools(ctx); err == nil {
		for i := range pools {
			if pools[i].Name == name {
				obj.UID = pools[i].UID // the event then shows up in kubectl describe
			}
		}
	}
	s.Events.Eventf(obj, kind, reason, format, args...)
}
