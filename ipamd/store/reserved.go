package store

import (
	"context"
	"fmt"

	"go.uber.org/zap"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/underpool/underpool/ipamd/allocator"
	v1 "github.com/underpool/underpool/ipamd/api/v1"
)

// ReservedIPs returns the offsets of a pool that ReservedIP objects keep out of allocation.
// It reads the informer at every commit, so a new reservation applies to the next batch.
// A listing error fails the commit's allocations: an empty set would hand out reserved
// addresses.
func ReservedIPs(cache client.Reader, log *zap.Logger) BlockedFunc {
	return func(ctx context.Context, pool *allocator.PoolView) (allocator.RunSet, error) {
		var list v1.ReservedIPList
		if err := cache.List(ctx, &list, client.UnsafeDisableDeepCopy); err != nil {
			return allocator.RunSet{}, fmt.Errorf("listing ReservedIPs, so nothing reserved is handed out: %w", err)
		}
		var blocked allocator.RunSet
		for _, r := range list.Items {
			set, err := allocator.ClipRanges(pool.Prefix, r.Spec.IPs)
			if err != nil {
				log.Warn("ignoring a bad ReservedIP", zap.String("reservedIP", r.Name), zap.Error(err))
				continue
			}
			for _, run := range set.Runs() {
				blocked.AddRun(run)
			}
		}
		return blocked, nil
	}
}
