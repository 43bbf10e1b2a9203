// Package service is ipamd's request logic: it turns allocate/release/GC requests into
// pool commits and Endpoint records, in the order that keeps both invariants: an address
// is marked in its pool before any Endpoint claims it, and an Endpoint forgets an address
// before its pool frees it, so a crash in between can only leave an orphan to collect,
// never one address with two owners.
package service

import (
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"k8s.io/client-go/tools/record"
	"k8s.io/utils/clock"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/ipamd/store"
)

// Service serves allocations for one node.
type Service struct {
	Node      string
	Pools     poolStore     // a *store.PoolCommitter
	Endpoints endpointStore // a *store.Endpoints
	Cluster   Cluster
	// Events records what operators must see on objects (nil: none).
	Events record.EventRecorder
	// QuarantineFor is how long an address found in use on the wire stays out of allocation.
	QuarantineFor time.Duration
	// QuarantineLimits bound what a pool keeps in quarantine (store/quarantine.go).
	QuarantineLimits store.QuarantineLimits
	// GCMinAge: CNI GC never releases an attachment younger than this (0: no minimum).
	GCMinAge time.Duration
	// GCMaxShare: a CNI GC that would release more than this share (0..1) of a network's
	// attachments on the node at once is refused unless forced (0: no limit).
	GCMaxShare float64
	Log        *zap.Logger
	Metrics    *Metrics
	// Window is the release protocol's bound (zero: store.DefaultWindow): an Endpoint
	// write that records an allocation, and a free after an Endpoint write that removed a
	// record, are sent only within its first half (docs/design.md). It must equal the
	// pool committer's.
	Window store.Window
	// Clock tells the time (nil: the real clock); the simulation sets it.
	Clock clock.PassiveClock

	locks    keyedMutex
	frees    sync.WaitGroup // freeAfterAnswer's, in flight
	order    sandboxOrder   // order.go
	spoofers spooferMemory  // quarantine.go
	ready    atomic.Bool

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

func (s *Service) now() time.Time {
	if s.Clock == nil {
		return time.Now()
	}
	return s.Clock.Now()
}
