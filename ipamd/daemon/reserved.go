package daemon

import (
	"context"

	"go.uber.org/zap"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/underpool/underpool/ipamd/allocator"
	v1 "github.com/underpool/underpool/ipamd/api/v1"
)

// reservedIPs returns the offsets of a pool that ReservedIP objects keep out of allocation.
// It reads the informer at every commit, so a new reservation applies to the next batch.
func reservedIPs(cache client.Reader, log *zap.Logger) func(*allocator.Pool) allocator.RunSet {
	return func(pool *allocator.Pool) allocator.RunSet {
		var list v1.ReservedIPList
		if err := cache.List(context.Background(), &list, client.UnsafeDisableDeepCopy); err != nil {
			log.Error("listing ReservedIPs", zap.Error(err))
			return allocator.RunSet{}
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
		return blocked
	}
}
