package store

import (
	"context"
	"fmt"

	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"

	v1 "github.com/underpool/underpool/api/v1"
)

// ObservePools tells the committer of every pool the informer reports deleted, so it
// drops that pool's series and queue. Only IPPools are watched, for their specs; their
// allocation state (PoolAllocation) is read from the API when needed, never watched.
func ObservePools(ctx context.Context, informers cache.Cache, pools *PoolCommitter) error {
	inf, err := informers.GetInformer(ctx, &v1.IPPool{})
	if err != nil {
		return fmt.Errorf("starting the IPPool informer: %w", err)
	}
	_, err = inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		DeleteFunc: func(obj any) {
			if tomb, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
				obj = tomb.Obj
			}
			if p, ok := obj.(*v1.IPPool); ok {
				pools.Deleted(p.Name)
			}
		},
	})
	return err
}
