// Package service is ipamd's request logic: it turns allocate/release/GC requests into
// pool commits and Endpoint records, in the order that keeps both invariants: an address
// is marked in its pool before any Endpoint claims it, and an Endpoint forgets an address
// before its pool frees it, so a crash in between can only leave an orphan to collect,
// never one address with two owners.
package service

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"k8s.io/client-go/tools/record"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/underpool/underpool/ipamd/api/v1"
	"github.com/underpool/underpool/ipamd/store"
)

// Service serves allocations for one node.
type Service struct {
	Node      string
	Pools     *store.Pools
	Endpoints *store.Endpoints
	Cluster   Cluster
	// Events records what operators must see on objects (nil: none).
	Events record.EventRecorder
	// QuarantineFor is how long an address found in use on the wire stays out of allocation.
	QuarantineFor time.Duration
	Log           *zap.Logger
	Metrics       *Metrics

	locks keyedMutex
	ready atomic.Bool

	notReady atomic.Value // string: why allocations are refused
}

// Ready reports whether allocations are served, and why not.
func (s *Service) Ready() (bool, string) {
	if s.ready.Load() {
		return true, ""
	}
	reason, _ := s.notReady.Load().(string)
	if reason == "" {
		reason = "starting: informer caches not synced yet"
	}
	return false, reason
}

// SetNotReady records why allocations are refused.
func (s *Service) SetNotReady(reason string) {
	s.notReady.Store(reason)
	s.ready.Store(false)
}

// Reconcile marks in their pools every address this node's Endpoints hold, then opens the
// service. Serving before this could hand out an address whose pool commit was lost.
// Addresses are grouped by pool and re-marked in one commit per pool, so a node with
// thousands of attachments is ready after a handful of writes.
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
	for pool, addrs := range byPool {
		lost, err := s.Pools.Ensure(ctx, pool, addrs)
		switch {
		case errors.Is(err, store.ErrPoolNotFound):
			s.Log.Warn("endpoints hold addresses of a pool that is gone", zap.String("pool", pool), zap.Int("addresses", len(addrs)))
		case err != nil:
			return fmt.Errorf("re-marking %d addresses in pool %s: %w", len(addrs), pool, err)
		case len(lost) > 0:
			s.Log.Warn("pool had lost addresses endpoints hold; marked them again", zap.String("pool", pool),
				zap.Int("count", len(lost)), zap.Stringer("first", lost[0]))
		}
	}
	s.Log.Info("reconciled this node's endpoints", zap.Int("endpoints", len(eps)), zap.Int("addresses", held), zap.Int("pools", len(byPool)))
	s.ready.Store(true)
	return nil
}

// updateEndpoint applies mutate to the newest Endpoint and saves it (see
// store.Endpoints.Mutate for why what the last call removed may then be freed).
func (s *Service) updateEndpoint(ctx context.Context, key client.ObjectKey, mutate func(*v1.Endpoint) bool) error {
	return s.Endpoints.Mutate(ctx, key, mutate)
}

func findInterface(ep *v1.Endpoint, containerID, ifName string) *v1.EndpointInterface {
	if ep == nil {
		return nil
	}
	for i := range ep.Status.Interfaces {
		if itf := &ep.Status.Interfaces[i]; itf.ContainerID == containerID && itf.Interface == ifName {
			return itf
		}
	}
	return nil
}

func withoutInterface(list []v1.EndpointInterface, containerID, ifName string) []v1.EndpointInterface {
	out := list[:0:0]
	for _, itf := range list {
		if itf.ContainerID != containerID || itf.Interface != ifName {
			out = append(out, itf)
		}
	}
	return out
}
