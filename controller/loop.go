package controller

import (
	"context"
	"time"
)

// everyInterval calls round once per interval, the first time one interval after the
// start, until ctx ends: the shape of every periodic runnable here.
func everyInterval(ctx context.Context, interval time.Duration, round func(context.Context)) error {
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-ticker.C:
			round(ctx)
		}
	}
}
