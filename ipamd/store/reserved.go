package store

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"go.uber.org/zap"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/core/allocator"
)

// ReservedIPs returns the offsets of a pool that ReservedIP objects keep out of allocation.
// It reads the informer at every commit, so a new reservation applies to the next batch.
// A listing error fails the commit's allocations: an empty set would hand out reserved
// addresses. A bad entry fails closed: the object's other entries stay reserved, and the
// bad one reserves what it clearly names (allocator.ParseReservations); it is logged once
// per version of the object here, and reported by the controller as an event and the
// underpool_reservedip_invalid metric (once for the cluster, not once per node).
func ReservedIPs(cache client.Reader, log *zap.Logger) BlockedFunc {
	warned := &badReservations{log: log, seen: map[string]string{}}
	return func(ctx context.Context, pool *allocator.PoolView) (allocator.RunSet, error) {
		var list v1.ReservedIPList
		if err := cache.List(ctx, &list, client.UnsafeDisableDeepCopy); err != nil {
			return allocator.RunSet{}, fmt.Errorf("listing ReservedIPs, so nothing reserved is handed out: %w", err)
		}
		var blocked allocator.RunSet
		for i := range list.Items {
			r := &list.Items[i]
			set, errs := allocator.ClipReservations(pool.Prefix, r.Spec.IPs)
			for _, run := range set.Runs() {
				blocked.AddRun(run)
			}
			warned.note(r, errs)
		}
		return blocked, nil
	}
}

// badReservations logs each bad version of a ReservedIP once: the reading runs at every
// commit, and one line per commit would bury everything else.
type badReservations struct {
	log  *zap.Logger
	mu   sync.Mutex
	seen map[string]string // name -> resourceVersion logged
}

func (b *badReservations) note(r *v1.ReservedIP, errs []*allocator.EntryError) {
	if len(errs) == 0 {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.seen[r.Name] == r.ResourceVersion {
		return
	}
	if len(b.seen) > 1024 {
		clear(b.seen) // bounded: at worst a bad object is logged again
	}
	b.seen[r.Name] = r.ResourceVersion
	joined := make([]error, len(errs))
	for i, e := range errs {
		joined[i] = e
	}
	b.log.Warn("ReservedIP has bad entries; its other entries stay reserved, and each bad one reserves what it clearly names",
		zap.String("reservedIP", r.Name), zap.Error(errors.Join(joined...)))
}
