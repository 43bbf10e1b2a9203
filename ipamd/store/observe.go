package store

import (
	"context"
	"fmt"

	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"

	v1 "github.com/underpool/underpool/api/v1"
)

// ObservePools tells the committer every pool the informer delivers, so it can time the
// informer's catch-up with its own writes and drop a deleted pool's series and queue.
func ObservePools(ctx context.Context, informers cache.Cache, pools *PoolCommitter) error {
	inf, err := informers.GetInformer(ctx, &v1.IPPool{})
	if err != nil {
		return fmt.Errorf("starting the IPPool informer: %w", err)
	}
	_, err = inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) {
			if p, ok := obj.(*v1.IPPool); ok {
				pools.Observed(p)
			}
		},
		UpdateFunc: func(_, obj any) {
			if p, ok := obj.(*v1.IPPool); ok {
				pools.Observed(p)
			}
		},
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
