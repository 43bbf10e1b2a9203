package store

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	v1 "github.com/underpool/underpool/api/v1"
)

// Index names registered on the Endpoint informer.
const (
	IndexEndpointNode        = "status.node"
	IndexEndpointContainerID = "status.interfaces.containerID"
)

// maxEndpointAttempts bounds the conflict retries of one Endpoint change.
const maxEndpointAttempts = 16

// ownWriteLag is how long our own create may stay unseen by the informer before a cache
// that does not show it is believed (someone deleted the object since).
const ownWriteLag = 5 * time.Second

// ownWriteTTL is how long a record of our own write is kept for a key nobody reads again;
// the informer catches up within milliseconds, this only bounds the map.
const ownWriteTTL = time.Minute

// EndpointIndexers returns the informer indexes the store's lookups rely on.
func EndpointIndexers() map[string]client.IndexerFunc {
	return map[string]client.IndexerFunc{
		IndexEndpointNode: func(o client.Object) []string {
			return []string{o.(*v1.Endpoint).Status.Node}
		},
		IndexEndpointContainerID: func(o client.Object) []string {
			var ids []string
			for _, itf := range o.(*v1.Endpoint).Status.Interfaces {
				ids = append(ids, itf.ContainerID)
			}
			return ids
		},
	}
}

// Endpoints reads and writes Endpoint records. Callers hold the pod's lock, so within this
// process one pod's Endpoint has one writer; other ipamds are kept out by resourceVersion.
type Endpoints struct {
	writer client.Client
	cache  client.Reader
	api    client.Reader
	// Clock tells how old a record of our own write is (nil: the real clock); the
	// simulation sets it, so that what the cache is believed depends on its time only.
	Clock clock.PassiveClock

	mu sync.Mutex
	// latest holds what this process last wrote, until the informer catches up, so that
	// back-to-back writes for one pod do not conflict with our own stale cache.
	latest    map[client.ObjectKey]ownWrite
	lastPrune time.Time
	// later counts the deletes of emptied Endpoints sent after their write answered
	later sync.WaitGroup
}

// Settle waits for the deletes of emptied Endpoints still in flight (save).
func (e *Endpoints) Settle() { e.later.Wait() }

type ownWrite struct {
	ep *v1.Endpoint
	at time.Time
}

// NewEndpoints returns a store writing through writer, reading from the informer cache
// and, where a decision needs the truth, from the uncached api reader.
func NewEndpoints(writer client.Client, cache, api client.Reader) *Endpoints {
	return &Endpoints{writer: writer, cache: cache, api: api, latest: map[client.ObjectKey]ownWrite{}}
}

// Get returns the newest known Endpoint, or nil when the pod has none. It may be stale:
// use it to decide what to try, never as evidence that an address is unheld.
func (e *Endpoints) Get(ctx context.Context, key client.ObjectKey) (*v1.Endpoint, error) {
	cached := &v1.Endpoint{}
	err := e.cache.Get(ctx, key, cached)
	if apierrors.IsNotFound(err) {
		cached = nil
	} else if err != nil {
		return nil, err
	}
	e.mu.Lock()
	own, ok := e.latest[key]
	switch {
	case ok && cached != nil && !newer(own.ep.ResourceVersion, cached.ResourceVersion):
		delete(e.latest, key) // the informer has caught up
		ok = false
	case ok && cached == nil && e.now().Sub(own.at) > ownWriteLag:
		// the informer showed our write long ago, and since shows it gone: someone deleted it
		delete(e.latest, key)
		ok = false
	}
	e.mu.Unlock()
	if ok {
		return own.ep.DeepCopy(), nil
	}
	return cached, nil
}

// Fresh reads the Endpoint from the API, bypassing caches; nil when absent.
func (e *Endpoints) Fresh(ctx context.Context, key client.ObjectKey) (*v1.Endpoint, error) {
	ep := &v1.Endpoint{}
	if err := e.api.Get(ctx, key, ep); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, nil
		}
		return nil, err
	}
	return ep, nil
}

// Mutate applies mutate to the newest Endpoint and writes the result, retrying on a
// conflict with a fresh read from the API. mutate reports whether it changed anything and
// must compute everything it tells its caller afresh on each call: only the call whose
// result was written counts. When Mutate returns nil, the object in the API is exactly
// what the last mutate call made of it, so a caller may free what that call removed: the
// write itself proves those records are gone now (invariant 7). A write that finds the
// object changed or gone is never taken as success; it is retried on what the API holds.
//
// The informer caches only this node's Endpoints, so a cache without the object is no
// evidence that there is nothing to change: when mutate finds nothing to do on the empty
// object a cache miss gave it, the API is asked once.
func (e *Endpoints) Mutate(ctx context.Context, key client.ObjectKey, mutate func(*v1.Endpoint) bool) error {
	ep, err := e.Get(ctx, key)
	missedInCache := err == nil && ep == nil
	for attempt := 1; err == nil; attempt++ {
		if ep == nil {
			ep = &v1.Endpoint{ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name}}
		}
		if !mutate(ep) {
			if !missedInCache {
				return nil
			}
			missedInCache = false
			if ep, err = e.Fresh(ctx, key); err != nil || ep == nil {
				return err
			}
			continue
		}
		missedInCache = false
		err = e.save(ctx, ep)
		retry := apierrors.IsConflict(err) || apierrors.IsAlreadyExists(err) || apierrors.IsNotFound(err)
		if !retry || attempt >= maxEndpointAttempts {
			return err
		}
		ep, err = e.Fresh(ctx, key)
	}
	return err
}

// save creates ep when it has no resourceVersion and updates it otherwise, always guarded
// by resourceVersion. An Endpoint left with no interfaces loses its protection finalizer
// in that same guarded update, then goes.
func (e *Endpoints) save(ctx context.Context, ep *v1.Endpoint) error {
	key := client.ObjectKeyFromObject(ep)
	empty := len(ep.Status.Interfaces) == 0
	switch {
	case empty && ep.ResourceVersion == "":
		return nil
	case empty:
		controllerutil.RemoveFinalizer(ep, v1.EndpointProtection)
		if err := e.writer.Update(ctx, ep); err != nil {
			return err
		}
		e.forget(key)
		if ep.DeletionTimestamp != nil {
			return nil // the API removes it now that no finalizer is left
		}
		// Conditional on the version just written: if someone attached meanwhile, the
		// delete conflicts and the Endpoint stays, as it must. Our update already proved
		// the records gone, so whatever the delete answers, at worst an empty object is
		// left, which holds nothing (recycling deletes it after its grace). So the caller
		// does not wait for it: a DEL is one write.
		rv, emptied := ep.ResourceVersion, ep.DeepCopy()
		e.later.Add(1)
		go func() {
			defer e.later.Done()
			_ = e.writer.Delete(context.WithoutCancel(ctx), emptied, client.Preconditions{ResourceVersion: &rv})
		}()
		return nil
	case ep.ResourceVersion == "":
		controllerutil.AddFinalizer(ep, v1.EndpointProtection)
		if err := e.writer.Create(ctx, ep); err != nil {
			return err
		}
	default:
		controllerutil.AddFinalizer(ep, v1.EndpointProtection)
		if err := e.writer.Update(ctx, ep); err != nil {
			return err
		}
	}
	e.remember(key, ep)
	return nil
}

func (e *Endpoints) remember(key client.ObjectKey, ep *v1.Endpoint) {
	now := e.now()
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.latest == nil {
		e.latest = map[client.ObjectKey]ownWrite{}
	}
	e.latest[key] = ownWrite{ep: ep.DeepCopy(), at: now}
	e.pruneLocked(now)
}

// pruneLocked drops records of our own writes that nobody read back: keys of pods that
// went away would otherwise stay in the map for the daemon's life.
func (e *Endpoints) pruneLocked(now time.Time) {
	if now.Sub(e.lastPrune) < ownWriteTTL/4 {
		return
	}
	e.lastPrune = now
	for k, w := range e.latest {
		if now.Sub(w.at) > ownWriteTTL {
			delete(e.latest, k)
		}
	}
}

// OwnWrites is how many of our own writes are remembered (for tests of the map's bound).
func (e *Endpoints) OwnWrites() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.latest)
}

func (e *Endpoints) now() time.Time {
	if e.Clock == nil {
		return time.Now()
	}
	return e.Clock.Now()
}

func (e *Endpoints) forget(key client.ObjectKey) {
	e.mu.Lock()
	delete(e.latest, key)
	e.mu.Unlock()
}

// DeleteEmpty deletes an Endpoint that holds nothing, conditional on the version seen, so
// an attachment recorded meanwhile keeps it.
func (e *Endpoints) DeleteEmpty(ctx context.Context, ep *v1.Endpoint) error {
	if len(ep.Status.Interfaces) != 0 {
		return fmt.Errorf("not deleting Endpoint %s/%s: it holds attachments", ep.Namespace, ep.Name)
	}
	rv := ep.ResourceVersion
	err := e.writer.Delete(ctx, ep.DeepCopy(), client.Preconditions{ResourceVersion: &rv})
	if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
		return nil
	}
	return err
}

// List returns every Endpoint in the informer cache; callers must not modify them.
func (e *Endpoints) List(ctx context.Context) ([]v1.Endpoint, error) {
	var list v1.EndpointList
	if err := e.cache.List(ctx, &list, client.UnsafeDisableDeepCopy); err != nil {
		return nil, fmt.Errorf("listing Endpoints: %w", err)
	}
	return list.Items, nil
}

// OnNode lists the Endpoints recorded on node.
func (e *Endpoints) OnNode(ctx context.Context, node string) ([]v1.Endpoint, error) {
	var list v1.EndpointList
	if err := e.cache.List(ctx, &list, client.MatchingFields{IndexEndpointNode: node}); err != nil {
		return nil, fmt.Errorf("listing Endpoints of node %s: %w", node, err)
	}
	return list.Items, nil
}

// ByContainer finds the Endpoints holding an attachment of containerID.
func (e *Endpoints) ByContainer(ctx context.Context, containerID string) ([]v1.Endpoint, error) {
	var list v1.EndpointList
	if err := e.cache.List(ctx, &list, client.MatchingFields{IndexEndpointContainerID: containerID}); err != nil {
		return nil, err
	}
	return list.Items, nil
}

// Unapplied reports whether a failed write certainly changed nothing: the API answered
// and refused it. A timeout, a reset connection or a server error leaves the outcome
// unknown (the write may have committed though its answer was lost), so whatever the
// write would have recorded must not be undone on the strength of it.
func Unapplied(err error) bool {
	var status apierrors.APIStatus
	if !errors.As(err, &status) {
		return false
	}
	code := status.Status().Code
	if apierrors.IsTimeout(err) || apierrors.IsServerTimeout(err) {
		return false
	}
	return code >= 400 && code < 500
}
