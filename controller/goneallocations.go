package controller

import (
	"context"
	"fmt"
	"sync"
	"time"

	"go.uber.org/zap"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	v1 "github.com/underpool/underpool/api/v1"
)

// goneAllocations deletes the PoolAllocations whose pool is gone: no IPPool of that name
// has the UID the state names. Their ownerReferences let the garbage collector remove
// them where kube-controller-manager runs; this covers clusters and tests without it.
//
// A state is deleted only after it has been seen without its pool for a whole window,
// and after an uncached read still finds no such pool: the cache may not yet hold a pool
// created a moment ago, whose first allocation made the state. The delete is guarded by
// the resourceVersion read, so a state written since (an ipamd that still had the pool
// in its informer) is looked at again, not lost unseen.
type goneAllocations struct {
	c   client.Client // cached reads, the delete
	api client.Reader // the read that decides
	// window is how long a state stays without its pool before it goes
	window time.Duration
	clock  func() time.Time // nil: time.Now
	log    *zap.Logger

	mu    sync.Mutex
	since map[string]goneSince // by PoolAllocation name
}

// goneSince is when a state of that pool UID was first seen without its pool.
type goneSince struct {
	poolUID types.UID
	at      time.Time
}

func (r *goneAllocations) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	alloc := &v1.PoolAllocation{}
	if err := r.c.Get(ctx, req.NamespacedName, alloc); err != nil {
		r.forget(req.Name)
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	live, err := poolLives(ctx, r.c, alloc)
	if err != nil || live {
		r.forget(req.Name)
		return reconcile.Result{}, err
	}
	now := r.now()
	if wait := r.seen(alloc, now); wait > 0 {
		return reconcile.Result{RequeueAfter: wait}, nil
	}
	// due: decide on what the API says now, not on the cache
	fresh := &v1.PoolAllocation{}
	if err := r.api.Get(ctx, req.NamespacedName, fresh); err != nil {
		r.forget(req.Name)
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	if live, err := poolLives(ctx, r.api, fresh); err != nil || live || fresh.PoolUID != alloc.PoolUID {
		r.forget(req.Name)
		return reconcile.Result{}, err
	}
	rv, uid := fresh.ResourceVersion, fresh.UID
	err = r.c.Delete(ctx, fresh, client.Preconditions{ResourceVersion: &rv, UID: &uid})
	switch {
	case err == nil:
		r.log.Info("deleted the allocation state of a pool that is gone", zap.String("poolAllocation", fresh.Name), zap.String("poolUID", string(fresh.PoolUID)))
	case apierrors.IsNotFound(err):
	case apierrors.IsConflict(err):
		return reconcile.Result{RequeueAfter: r.window}, nil // written since the read: look again later
	default:
		return reconcile.Result{}, fmt.Errorf("deleting PoolAllocation %s of a gone pool: %w", fresh.Name, err)
	}
	r.forget(req.Name)
	return reconcile.Result{}, nil
}

// poolLives reports whether the IPPool the state belongs to exists.
func poolLives(ctx context.Context, r client.Reader, alloc *v1.PoolAllocation) (bool, error) {
	pool := &v1.IPPool{}
	if err := r.Get(ctx, client.ObjectKey{Name: alloc.Name}, pool); err != nil {
		if apierrors.IsNotFound(err) {
			return false, nil
		}
		return false, fmt.Errorf("reading IPPool %s of its PoolAllocation: %w", alloc.Name, err)
	}
	return pool.UID == alloc.PoolUID, nil
}

// seen notes the state seen without its pool and says how long it must still wait.
func (r *goneAllocations) seen(alloc *v1.PoolAllocation, now time.Time) time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.since == nil {
		r.since = map[string]goneSince{}
	}
	s, ok := r.since[alloc.Name]
	if !ok || s.poolUID != alloc.PoolUID {
		s = goneSince{poolUID: alloc.PoolUID, at: now}
		r.since[alloc.Name] = s
	}
	return max(0, s.at.Add(r.window).Sub(now))
}

func (r *goneAllocations) forget(name string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.since, name)
}

func (r *goneAllocations) now() time.Time {
	if r.clock != nil {
		return r.clock()
	}
	return time.Now()
}
