package simulation

import (
	"context"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	clienttesting "k8s.io/client-go/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/ipamd/store"
)

// The one in-memory API is controller-runtime's fake client: it enforces resourceVersion
// on updates and conditional deletes, and finalizers on delete. Every actor reaches it
// through gates (gatedClient), and reads its informer cache from a snapshot the scheduler
// took at a step of its choosing (snapshot).

func newScheme() *runtime.Scheme {
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		panic(err)
	}
	if err := v1.AddToScheme(scheme); err != nil {
		panic(err)
	}
	return scheme
}

// newAPI is the fake client with one resourceVersion counter for every object, as the
// apiserver has (a per-object counter would give an Endpoint made again a version older
// than its predecessor's), and the plain object tracker: the simulation applies no
// patches, so managed fields would only cost time.
func newAPI(scheme *runtime.Scheme, objs ...client.Object) client.WithWatch {
	tracker := clienttesting.NewObjectTracker(scheme, serializer.NewCodecFactory(scheme).UniversalDecoder())
	b := fake.NewClientBuilder().WithScheme(scheme).WithObjectTracker(tracker).WithGlobalResourceVersionCounter().
		WithStatusSubresource(&v1.IPPool{}, &corev1.Pod{}).WithObjects(objs...)
	for field, fn := range store.EndpointIndexers() {
		b = b.WithIndex(&v1.Endpoint{}, field, fn)
	}
	return b.Build()
}

// counted bumps s.writes on every write that reaches the API, so that what was read of
// it is read again only after a change.
func (s *sim) counted(api client.WithWatch) client.WithWatch {
	return interceptor.NewClient(api, interceptor.Funcs{
		Create: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.CreateOption) error {
			s.writes++
			return c.Create(ctx, obj, opts...)
		},
		Update: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.UpdateOption) error {
			s.writes++
			return c.Update(ctx, obj, opts...)
		},
		Delete: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.DeleteOption) error {
			s.writes++
			return c.Delete(ctx, obj, opts...)
		},
		SubResourceUpdate: func(ctx context.Context, c client.Client, sub string, obj client.Object, opts ...client.SubResourceUpdateOption) error {
			s.writes++
			return c.SubResource(sub).Update(ctx, obj, opts...)
		},
	})
}

// gatedClient is the API as one actor reaches it: every call parks until the scheduler
// lets it happen, with the fate it chooses.
func (s *sim) gatedClient(a *actor) client.Client {
	park := func(ctx context.Context, k kind, desc string, apply func(onCopy bool) error) error {
		return s.gates.park(ctx, a, k, desc, apply)
	}
	return interceptor.NewClient(s.api, interceptor.Funcs{
		Get: func(ctx context.Context, c client.WithWatch, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
			return park(ctx, apiRead, "get "+kindOf(obj)+" "+keyString(key), func(bool) error {
				return c.Get(context.Background(), key, obj, opts...)
			})
		},
		List: func(ctx context.Context, c client.WithWatch, list client.ObjectList, opts ...client.ListOption) error {
			return park(ctx, apiRead, "list "+kindOf(list), func(bool) error {
				return c.List(context.Background(), list, opts...)
			})
		},
		Create: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.CreateOption) error {
			return park(ctx, apiWrite, "create "+describe(obj), func(onCopy bool) error {
				return c.Create(context.Background(), target(obj, onCopy), opts...)
			})
		},
		Update: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.UpdateOption) error {
			return park(ctx, apiWrite, "update "+describe(obj), func(onCopy bool) error {
				next, isState := obj.(*v1.PoolAllocation)
				var late error
				if isState {
					late = s.lateFrees(a, next) // against the state it replaces, as it lands
				}
				err := c.Update(context.Background(), target(obj, onCopy), opts...)
				if err == nil && late != nil && s.err == nil {
					s.err = late // a write refused frees nothing
				}
				return err
			})
		},
		Delete: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.DeleteOption) error {
			var do client.DeleteOptions
			do.ApplyOptions(opts)
			desc := "delete " + kindOf(obj) + " " + keyString(client.ObjectKeyFromObject(obj))
			if do.Preconditions != nil && do.Preconditions.ResourceVersion != nil {
				desc += " if rv=" + *do.Preconditions.ResourceVersion
			}
			return park(ctx, apiWrite, desc, func(onCopy bool) error {
				return c.Delete(context.Background(), target(obj, onCopy), opts...)
			})
		},
		SubResourceUpdate: func(ctx context.Context, c client.Client, sub string, obj client.Object, opts ...client.SubResourceUpdateOption) error {
			return park(ctx, apiWrite, "update "+sub+" "+describe(obj), func(onCopy bool) error {
				return c.SubResource(sub).Update(context.Background(), target(obj, onCopy), opts...)
			})
		},
		Patch: func(context.Context, client.WithWatch, client.Object, client.Patch, ...client.PatchOption) error {
			return fmt.Errorf("simulation: Patch is not modelled")
		},
	})
}

func target(obj client.Object, onCopy bool) client.Object {
	if onCopy {
		return obj.DeepCopyObject().(client.Object)
	}
	return obj
}

// cacheReader is an actor's informer cache: the snapshot it holds now, read through a
// gate; node, when set, keeps what ipamd's field selectors keep (its own pods, Endpoints
// and Node).
type cacheReader struct {
	s    *sim
	a    *actor
	node string
}

func (r cacheReader) Get(_ context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	// an informer read never fails on the caller's context
	return r.s.gates.park(context.Background(), r.a, cacheRead, "cache get "+kindOf(obj)+" "+keyString(key), func(bool) error {
		if err := r.unwatched(obj); err != nil {
			return err
		}
		if err := r.a.cache.Get(context.Background(), key, obj, opts...); err != nil {
			return err
		}
		if r.node != "" && !r.visible(obj) {
			return apierrors.NewNotFound(v1.GroupVersion.WithResource(kindOf(obj)).GroupResource(), key.Name)
		}
		return nil
	})
}

func (r cacheReader) List(_ context.Context, list client.ObjectList, opts ...client.ListOption) error {
	return r.s.gates.park(context.Background(), r.a, cacheRead, "cache list "+kindOf(list), func(bool) error {
		if err := r.unwatched(list); err != nil {
			return err
		}
		if err := r.a.cache.List(context.Background(), list, opts...); err != nil {
			return err
		}
		if r.node == "" {
			return nil
		}
		switch l := list.(type) {
		case *v1.EndpointList:
			l.Items = slices.DeleteFunc(l.Items, func(ep v1.Endpoint) bool { return !r.visible(&ep) })
		case *corev1.PodList:
			l.Items = slices.DeleteFunc(l.Items, func(p corev1.Pod) bool { return !r.visible(&p) })
		case *corev1.NodeList:
			l.Items = slices.DeleteFunc(l.Items, func(n corev1.Node) bool { return !r.visible(&n) })
		}
		return nil
	})
}

// unwatched fails the run when an ipamd reads a PoolAllocation from its cache: no node
// watches them (docs/design.md, "Allocation state at 5000 nodes"), so a real ipamd's
// cached read would start an informer on every node, the very cost the PoolAllocation
// exists to remove, and answer from a cache its own writes do not reach. ipamd reads
// them from the API. The call fails too, so the code under test gets no state from it.
func (r cacheReader) unwatched(obj runtime.Object) error {
	if r.node == "" {
		return nil
	}
	switch obj.(type) {
	case *v1.PoolAllocation, *v1.PoolAllocationList:
		err := fmt.Errorf("%s read %s from its informer cache: no node watches PoolAllocations, ipamd must read them from the API", r.a.name, kindOf(obj))
		if r.s.err == nil {
			r.s.err = fmt.Errorf("harness: %w", err)
		}
		return err
	}
	return nil
}

func (r cacheReader) visible(obj client.Object) bool {
	switch o := obj.(type) {
	case *v1.Endpoint:
		return o.Status.Node == r.node
	case *corev1.Pod:
		return o.Spec.NodeName == r.node
	case *corev1.Node:
		return o.Name == r.node
	}
	return true
}

// cachedClient reads from a cache and writes to the API, as a manager's client does.
type cachedClient struct {
	client.Client
	cache client.Reader
}

func (c cachedClient) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	return c.cache.Get(ctx, key, obj, opts...)
}

func (c cachedClient) List(ctx context.Context, list client.ObjectList, opts ...client.ListOption) error {
	return c.cache.List(ctx, list, opts...)
}

func kindOf(obj runtime.Object) string {
	name := fmt.Sprintf("%T", obj)
	name = name[strings.LastIndexByte(name, '.')+1:]
	if name == "PartialObjectMetadata" {
		return "meta"
	}
	return strings.ToLower(name)
}

func keyString(k client.ObjectKey) string {
	if k.Namespace == "" {
		return k.Name
	}
	return k.Namespace + "/" + k.Name
}

// describe says what a write carries, for the trace: the version it is guarded by and
// the state it sets.
func describe(obj client.Object) string {
	s := kindOf(obj) + " " + keyString(client.ObjectKeyFromObject(obj))
	if rv := obj.GetResourceVersion(); rv != "" {
		s += " rv=" + rv
	}
	switch o := obj.(type) {
	case *v1.IPPool:
		s += fmt.Sprintf(" allocatedIPCount=%d", o.Status.AllocatedIPCount)
	case *v1.PoolAllocation:
		s += fmt.Sprintf(" of %s allocated=%q reclaiming=%q", o.PoolUID, o.State.Allocated, o.State.Reclaiming)
		if o.Closed {
			s += " closed"
		}
	case *v1.Endpoint:
		var recs []string
		for _, itf := range o.Status.Interfaces {
			r := itf.ContainerID
			for _, ip := range itf.IPs {
				r += " " + ip.Address
			}
			if itf.Detached != nil {
				r += " detached"
			}
			recs = append(recs, r)
		}
		s += " [" + strings.Join(recs, "; ") + "]"
		if o.Status.Node != "" {
			s += " on " + o.Status.Node
		}
	}
	return s
}
