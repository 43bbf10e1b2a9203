package controller

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/prometheus/client_golang/prometheus"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/core/apppool"
)

// +kubebuilder:rbac:groups=underpool.io,resources=ippools,verbs=create;delete

// appPools keeps one IPPool per interface and family for each workload whose pod template
// names a Subnet: carved from the first Subnet listed with room for it, sized to the
// workload's pods (+N), resized in that Subnet as the workload scales, and deleted (or
// kept, ippool-reclaim: "false") when the workload goes. One reconciler per built-in kind
// (appkinds.go), and one for every other kind, read through its scale subresource and
// its pods (appothers.go).
type appPools struct {
	c client.Client
	// api reads pools uncached: the cache lags this controller's own creates, and a pool
	// carved from a stale list would overlap the one created a moment before
	api client.Reader
	// kind is the built-in kind this reconciler serves; "" serves every other kind, whose
	// requests are named "Kind.group/name" (otherRequest)
	kind   string
	others *otherKinds // reads the workloads of other kinds; nil in a built-in kind's reconciler
	events events.EventRecorder
	// carving is shared by every kind's reconciler: one carve at a time (list, decide,
	// create or update), so this controller never writes two pools that share an
	// address. One lock for every Subnet, not one per Subnet: Subnets may overlap, and a
	// carve is one list and one write.
	carving *sync.Mutex
	changes *prometheus.CounterVec // underpool_application_pools_total
}

func (r *appPools) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	w, ok := r.workloadFor(req)
	if !ok {
		return reconcile.Result{}, nil
	}
	a, err := r.read(ctx, w)
	if apierrors.IsNotFound(err) {
		return reconcile.Result{}, r.workloadGone(ctx, w)
	}
	if err != nil {
		if a != nil && a.obj != nil { // the workload is there, but cannot be sized
			r.events.Eventf(a.obj, nil, "Warning", "AppPoolFailed", "CarvePool", "%v", err)
			return reconcile.Result{RequeueAfter: failedRecheck}, nil
		}
		return reconcile.Result{}, err
	}
	result := reconcile.Result{RequeueAfter: a.recheck}
	if a.above != nil {
		return result, nil // a Deployment's ReplicaSet, a CronJob's Job: the pool is the controller's above
	}
	subnets, err := v1.ParseSubnets(a.template)
	if subnets == nil && err == nil {
		return result, nil // the workload asks for no application pool
	}
	size, err2 := v1.ParseIPNumber(a.template, a.replicas)
	reclaim, err3 := v1.ParseReclaim(a.template)
	if err = firstErr(err, err2, err3); err != nil {
		r.events.Eventf(a.obj, nil, "Warning", "BadAnnotation", "CarvePool", "%v", err)
		return result, nil // nothing to retry until the workload changes
	}
	for ifName, sub := range subnets {
		for _, family := range []v1.IPFamily{v1.IPv4, v1.IPv6} {
			if names := sub.List(family); len(names) > 0 {
				carved, err := r.ensurePool(ctx, w, a, poolWant{ifName: ifName, family: family, subnets: names, size: size, reclaim: reclaim})
				result = soonest(result, r.report(a, family, carved, err))
			}
		}
	}
	return result, nil
}

// Rechecks: how soon a workload is looked at again when its pool cannot be made now.
const (
	// terminatingRecheck: waiting for its pool's earlier incarnation to go, should the
	// pool's delete event be missed; the event itself (enqueueOwner) is what normally
	// carves the new pool at once.
	terminatingRecheck = 30 * time.Second
	// noRoomRecheck: its Subnets have no room (an operator frees addresses or adds a Subnet)
	noRoomRecheck = 30 * time.Second
	failedRecheck = 10 * time.Second
	// shrinkRecheck: its pool holds addresses of pods still terminating, which it drops
	// once they go
	shrinkRecheck = 5 * time.Second
)

// report turns one pool's outcome into an event on the workload and a recheck.
func (r *appPools) report(a *appWorkload, family v1.IPFamily, carved string, err error) reconcile.Result {
	var terminating *poolTerminating
	var stuck *stuckInSubnet
	var full *noSubnetHasRoom
	var shrinking *shrinkWaiting
	switch {
	case err == nil && carved != "":
		r.events.Eventf(a.obj, nil, "Normal", "AppPoolCarved", "CarvePool", "%s", carved)
	case err == nil:
	case errors.As(err, &shrinking):
		return reconcile.Result{RequeueAfter: shrinkRecheck} // no event: the pods are on their way out
	case errors.As(err, &terminating):
		r.events.Eventf(a.obj, nil, "Normal", "AppPoolTerminating", "CarvePool", "%v", err)
		return reconcile.Result{RequeueAfter: terminatingRecheck}
	case errors.As(err, &stuck), errors.As(err, &full):
		r.events.Eventf(a.obj, nil, "Warning", "AppPoolNoRoom", "CarvePool", "%s %v", family, err)
		return reconcile.Result{RequeueAfter: noRoomRecheck}
	default:
		r.events.Eventf(a.obj, nil, "Warning", "AppPoolFailed", "CarvePool", "%s pool: %v", family, err)
		return reconcile.Result{RequeueAfter: failedRecheck}
	}
	return reconcile.Result{}
}

// soonest keeps the earlier of two rechecks (zero: none).
func soonest(a, b reconcile.Result) reconcile.Result {
	if a.RequeueAfter == 0 || (b.RequeueAfter > 0 && b.RequeueAfter < a.RequeueAfter) {
		return b
	}
	return a
}

// workloadFor names the workload a request is for: the reconciler's own kind, or the
// kind the request names for the reconciler of every other kind.
func (r *appPools) workloadFor(req reconcile.Request) (apppool.Workload, bool) {
	if r.kind != "" {
		return apppool.Workload{Kind: r.kind, Namespace: req.Namespace, Name: req.Name}, true
	}
	kind, name, ok := strings.Cut(req.Name, "/")
	return apppool.Workload{Kind: kind, Namespace: req.Namespace, Name: name}, ok && kind != "" && name != ""
}

// requestFor is the request of the reconciler that serves w: the workload's own name for
// a built-in kind; "Kind.group/name" for any other (object names hold no "/", so the
// request cannot be mistaken for a name).
func requestFor(w apppool.Workload) reconcile.Request {
	if w.Builtin() {
		return reconcile.Request{NamespacedName: types.NamespacedName{Namespace: w.Namespace, Name: w.Name}}
	}
	return reconcile.Request{NamespacedName: types.NamespacedName{Namespace: w.Namespace, Name: w.Kind + "/" + w.Name}}
}

// read reads the workload of any kind; NotFound when it is gone.
func (r *appPools) read(ctx context.Context, w apppool.Workload) (*appWorkload, error) {
	if !w.Builtin() {
		if r.others == nil {
			return nil, fmt.Errorf("no reader for workloads of kind %s", w.Kind)
		}
		return r.others.read(ctx, w)
	}
	k := builtinKinds[w.Kind]
	obj := k.newObj()
	if err := r.c.Get(ctx, client.ObjectKey{Namespace: w.Namespace, Name: w.Name}, obj); err != nil {
		return nil, err
	}
	a := k.read(obj)
	return &a, nil
}

// poolTerminating says the workload's pool, by its stable name, is still being deleted:
// a workload deleted and made again under the same name, while its old pods still hold
// addresses of the old pool (the pool protection finalizer keeps it until they go). Pool
// names stay those of the workload's name, never of its UID: ipamd finds a pod's pool by
// its owner's name alone, and a StatefulSet's pool kept with ippool-reclaim: "false"
// must be found by the set made again.
type poolTerminating struct{ pool, kind string }

func (e *poolTerminating) Error() string {
	return fmt.Sprintf("IPPool %s of an earlier %s of this name is still being deleted (its old pods still hold addresses of it); "+
		"it is carved again as soon as it is gone", e.pool, e.kind)
}

// enqueueOwner maps an application pool's deletion to a reconcile of the workload it was
// carved for, by the reconciler of kind ("" for every kind not built in): a workload made
// again while its old pool was terminating gets its new pool the moment the old one is gone.
func enqueueOwner(kind string) handler.EventHandler {
	return handler.EnqueueRequestsFromMapFunc(func(_ context.Context, obj client.Object) []reconcile.Request {
		pool, ok := obj.(*v1.IPPool)
		if !ok {
			return nil
		}
		w, ok := apppool.OwnerOf(pool)
		if !ok || (kind != "" && w.Kind != kind) || (kind == "" && w.Builtin()) {
			return nil
		}
		return []reconcile.Request{requestFor(w)}
	})
}

// poolDeletes lets only deletions through: a pool's status changes as its allocations do
// (the counts the controller mirrors from its PoolAllocation, every CountsInterval), and
// each reconcile of a workload reads every pool from the API.
var poolDeletes = predicate.Funcs{
	CreateFunc:  func(event.CreateEvent) bool { return false },
	UpdateFunc:  func(event.UpdateEvent) bool { return false },
	DeleteFunc:  func(event.DeleteEvent) bool { return true },
	GenericFunc: func(event.GenericEvent) bool { return false },
}

// workloadGone deletes the workload's pools unless they are to be kept; the pool
// protection finalizer lets each go once its last address is released.
func (r *appPools) workloadGone(ctx context.Context, w apppool.Workload) error {
	var pools v1.IPPoolList
	if err := r.c.List(ctx, &pools, client.MatchingLabels{apppool.LabelOwnerHash: w.Hash()}); err != nil {
		return err
	}
	for i := range pools.Items {
		p := &pools.Items[i]
		if p.Labels[apppool.LabelReclaim] == "false" || p.DeletionTimestamp != nil {
			continue
		}
		if err := r.c.Delete(ctx, p); client.IgnoreNotFound(err) != nil {
			return err
		} else if err == nil {
			r.changes.WithLabelValues(appPoolDeleted).Inc()
		}
	}
	return nil
}

func firstErr(errs ...error) error {
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}
