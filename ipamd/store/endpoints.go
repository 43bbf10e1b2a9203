package store

import (
	"context"
	"fmt"
	"sync"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/underpool/underpool/ipamd/api/v1"
)

// Index names registered on the Endpoint informer.
const (
	IndexEndpointNode        = "status.node"
	IndexEndpointContainerID = "status.interfaces.containerID"
)

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
	Writer client.Client
	Cache  client.Reader
	API    client.Reader

	mu sync.Mutex
	// latest holds what this process last wrote, until the informer catches up, so that
	// back-to-back writes for one pod do not conflict with our own stale cache.
	latest map[client.ObjectKey]*v1.Endpoint
}

// Get returns the newest known Endpoint, or nil when the pod has none.
func (e *Endpoints) Get(ctx context.Context, key client.ObjectKey) (*v1.Endpoint, error) {
	cached := &v1.Endpoint{}
	err := e.Cache.Get(ctx, key, cached)
	if apierrors.IsNotFound(err) {
		cached = nil
	} else if err != nil {
		return nil, err
	}
	e.mu.Lock()
	own := e.latest[key]
	if own != nil && cached != nil && !newer(own.ResourceVersion, cached.ResourceVersion) {
		delete(e.latest, key) // the informer has caught up
		own = nil
	}
	e.mu.Unlock()
	if own != nil {
		return own.DeepCopy(), nil
	}
	return cached, nil
}

// Fresh reads the Endpoint from the API, bypassing caches; nil when absent.
func (e *Endpoints) Fresh(ctx context.Context, key client.ObjectKey) (*v1.Endpoint, error) {
	ep := &v1.Endpoint{}
	if err := e.API.Get(ctx, key, ep); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, nil
		}
		return nil, err
	}
	return ep, nil
}

// Save creates ep when it has no resourceVersion, updates it otherwise, and deletes it
// when it holds no interfaces any more. Conflicts are returned for the caller to retry.
func (e *Endpoints) Save(ctx context.Context, ep *v1.Endpoint) error {
	key := client.ObjectKeyFromObject(ep)
	var err error
	switch {
	case len(ep.Status.Interfaces) == 0 && ep.ResourceVersion == "":
		return nil
	case len(ep.Status.Interfaces) == 0:
		err = e.Writer.Delete(ctx, ep, client.Preconditions{ResourceVersion: &ep.ResourceVersion})
		if apierrors.IsNotFound(err) {
			err = nil
		}
		if err == nil {
			e.forget(key)
		}
		return err
	case ep.ResourceVersion == "":
		err = e.Writer.Create(ctx, ep)
	default:
		err = e.Writer.Update(ctx, ep)
	}
	if err != nil {
		return err
	}
	e.mu.Lock()
	if e.latest == nil {
		e.latest = map[client.ObjectKey]*v1.Endpoint{}
	}
	e.latest[key] = ep.DeepCopy()
	e.mu.Unlock()
	return nil
}

func (e *Endpoints) forget(key client.ObjectKey) {
	e.mu.Lock()
	delete(e.latest, key)
	e.mu.Unlock()
}

// OnNode lists the Endpoints recorded on node.
func (e *Endpoints) OnNode(ctx context.Context, node string) ([]v1.Endpoint, error) {
	var list v1.EndpointList
	if err := e.Cache.List(ctx, &list, client.MatchingFields{IndexEndpointNode: node}); err != nil {
		return nil, fmt.Errorf("listing Endpoints of node %s: %w", node, err)
	}
	return list.Items, nil
}

// ByContainer finds the Endpoints holding an attachment of containerID.
func (e *Endpoints) ByContainer(ctx context.Context, containerID string) ([]v1.Endpoint, error) {
	var list v1.EndpointList
	if err := e.Cache.List(ctx, &list, client.MatchingFields{IndexEndpointContainerID: containerID}); err != nil {
		return nil, err
	}
	return list.Items, nil
}
