package controller

import (
	"context"
	"net/netip"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/core/allocator"
)

// overlapReport tells operators about pools that share addresses (written concurrently,
// or while the webhook was not registered): a Warning event on both pools, naming the
// other and the first shared address, and the underpool_pools_overlapping gauge.
type overlapReport struct {
	c           client.Reader
	events      events.EventRecorder
	overlapping prometheus.Gauge // underpool_pools_overlapping

	mu       sync.Mutex
	reported map[[2]string]string // pair -> first shared address last reported, so events are not repeated
}

func (r *overlapReport) Reconcile(ctx context.Context, _ reconcile.Request) (reconcile.Result, error) {
	var list v1.IPPoolList
	if err := r.c.List(ctx, &list); err != nil {
		return reconcile.Result{}, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	reported := map[[2]string]string{}
	overlapping := map[string]bool{}
	for _, o := range overlapsOf(list.Items) {
		a, b := o.a, o.b
		overlapping[a.Name], overlapping[b.Name] = true, true
		key := [2]string{a.Name, b.Name}
		reported[key] = o.first.String()
		if r.reported[key] == o.first.String() {
			continue
		}
		for _, pair := range [][2]*v1.IPPool{{a, b}, {b, a}} {
			r.events.Eventf(pair[0], pair[1], "Warning", "PoolsOverlap", "CheckOverlap",
				"shares addresses with IPPool %s, the first %s: ipamd hands out none of them from either pool until they are separated (narrow spec.ips or add them to spec.excludeIPs of one pool)",
				pair[1].Name, o.first)
		}
	}
	r.reported = reported
	r.overlapping.Set(float64(len(overlapping)))
	return reconcile.Result{}, nil
}

// poolOverlap is two pools that share addresses, and the lowest they share.
type poolOverlap struct {
	a, b  *v1.IPPool
	first netip.Addr
}

// overlapsOf compares every pool's spec footprint with every other's: the overlap report
// and the Overlapping condition (conditions.go) say the same.
func overlapsOf(pools []v1.IPPool) []poolOverlap {
	fps := make([]allocator.Footprint, len(pools))
	ok := make([]bool, len(pools))
	for i := range pools {
		fps[i], ok[i] = allocator.FootprintOf(pools[i].Name, &pools[i].Spec)
	}
	var out []poolOverlap
	for i := range pools {
		for j := i + 1; j < len(pools); j++ {
			if !ok[i] || !ok[j] || !fps[i].Prefix.Overlaps(fps[j].Prefix) {
				continue
			}
			if first, shared := allocator.FirstShared(fps[i], fps[j]); shared {
				out = append(out, poolOverlap{a: &pools[i], b: &pools[j], first: first})
			}
		}
	}
	return out
}
