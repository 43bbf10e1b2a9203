package controller

import (
	"context"
	"time"

	"go.uber.org/zap"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/controller/orphans"
)

// +kubebuilder:rbac:groups=underpool.io,resources=endpoints,verbs=get;list;watch

// orphanLoop runs the orphan sweep on the elected controller only: one sweeper in the
// cluster is what makes freeing an orphan safe (see package orphans).
type orphanLoop struct {
	sweeper         *orphans.Sweeper
	interval, grace time.Duration
	log             *zap.Logger
}

func (o *orphanLoop) NeedLeaderElection() bool { return true }

func (o *orphanLoop) Start(ctx context.Context) error {
	return everyInterval(ctx, o.interval, func(ctx context.Context) {
		freed, err := o.sweeper.Sweep(ctx, time.Now(), o.grace)
		if err != nil {
			o.log.Warn("orphan sweep stopped early; next round retries", zap.Error(err))
		}
		if freed > 0 {
			o.log.Info("freed orphan addresses", zap.Int("count", freed))
		}
	})
}

// watchPoolsFor feeds every allocation state the informer delivers to the sweeper, with
// its pool from the cache, so an address seen free between two sweeps starts a new clock
// when it is handed out again; and tells it of every pool deleted.
func watchPoolsFor(ctx context.Context, c cache.Cache, s *orphans.Sweeper) error {
	allocs, err := c.GetInformer(ctx, &v1.PoolAllocation{})
	if err != nil {
		return err
	}
	observe := func(obj any) {
		alloc, ok := obj.(*v1.PoolAllocation)
		if !ok {
			return
		}
		pool := &v1.IPPool{}
		if err := c.Get(ctx, client.ObjectKey{Name: alloc.Name}, pool); err == nil {
			s.Observe(pool, alloc)
		}
	}
	if _, err = allocs.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc:    observe,
		UpdateFunc: func(_, obj any) { observe(obj) },
	}); err != nil {
		return err
	}
	pools, err := c.GetInformer(ctx, &v1.IPPool{})
	if err != nil {
		return err
	}
	_, err = pools.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		DeleteFunc: func(obj any) {
			if tomb, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
				obj = tomb.Obj
			}
			if p, ok := obj.(*v1.IPPool); ok {
				s.Forget(p.UID)
			}
		},
	})
	return err
}
