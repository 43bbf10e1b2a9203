package controller

import (
	"context"
	"time"

	"go.uber.org/zap"

	"github.com/underpool/underpool/ipamd/orphans"
)

// +kubebuilder:rbac:groups=underpool.io,resources=ippools/status,verbs=get;update;patch
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
	ticker := time.NewTicker(o.interval)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-ticker.C:
		}
		freed, err := o.sweeper.Sweep(ctx, time.Now(), o.grace)
		if err != nil {
			o.log.Warn("orphan sweep stopped early; next round retries", zap.Error(err))
		}
		if freed > 0 {
			o.log.Info("freed orphan addresses", zap.Int("count", freed))
		}
	}
}
