package controller

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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

// +kubebuilder:rbac:groups=apps,resources=deployments;statefulsets,verbs=get;list;watch
// +kubebuilder:rbac:groups=underpool.io,resources=ippools,verbs=create;delete

// appPools keeps one IPPool per family for each Deployment or StatefulSet whose pod
// template names a Subnet: carved from it, sized to the replicas (+N), resized as the
// workload scales, and deleted (or kept, ippool-reclaim: "false") when the workload goes.
type appPools struct {
	c client.Client
	// api reads pools uncached: the cache lags this controller's own creates, and a pool
	// carved from a stale list would overlap the one created a moment before
	api    client.Reader
	kind   string // Deployment or StatefulSet
	events events.EventRecorder
	// carving is shared by the Deployment and StatefulSet reconcilers: one carve at a time
	// (list, decide, create or update), so this controller never writes two pools that
	// share an address. One lock for every Subnet, not one per Subnet: Subnets may overlap,
	// and a carve is one list and one write.
	carving *sync.Mutex
	changes *prometheus.CounterVec // underpool_application_pools_total
}

func (r *appPools) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	w := apppool.Workload{Kind: r.kind, Namespace: req.Namespace, Name: req.Name}
	obj, template, replicas, selector, err := r.get(ctx, req)
	if apierrors.IsNotFound(err) {
		return reconcile.Result{}, r.workloadGone(ctx, w)
	}
	if err != nil {
		return reconcile.Result{}, err
	}
	subnets, err := v1.ParseSubnets(template)
	if subnets == nil && err == nil {
		return reconcile.Result{}, nil // the workload asks for no application pool
	}
	size, err2 := v1.ParseIPNumber(template, replicas)
	reclaim, err3 := v1.ParseReclaim(template)
	if err = firstErr(err, err2, err3); err != nil {
		r.events.Eventf(obj, nil, "Warning", "BadAnnotation", "CarvePool", "%v", err)
		return reconcile.Result{}, nil // nothing to retry until the workload changes
	}
	result := reconcile.Result{}
	for ifName, sub := range subnets {
		for _, family := range []v1.IPFamily{v1.IPv4, v1.IPv6} {
			name := sub.First(family)
			if name == "" {
				continue
			}
			err := r.ensurePool(ctx, w, ifName, family, name, size, reclaim, selector)
			var terminating *poolTerminating
			if errors.As(err, &terminating) {
				r.events.Eventf(obj, nil, "Normal", "AppPoolTerminating", "CarvePool", "%v", err)
				result.RequeueAfter = terminatingRecheck
				continue
			}
			if err != nil {
				r.events.Eventf(obj, nil, "Warning", "AppPoolFailed", "CarvePool", "%s pool from Subnet %s: %v", family, name, err)
				return reconcile.Result{RequeueAfter: 10 * time.Second}, nil
			}
		}
	}
	return result, nil
}

// terminatingRecheck is how soon a workload waiting for its pool's earlier incarnation to
// go is looked at again, should the pool's delete event be missed; the event itself
// (enqueueOwner) is what normally carves the new pool at once.
const terminatingRecheck = 30 * time.Second

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

// enqueueOwner maps an application pool's deletion to a reconcile of the workload of
// kind it was carved for: a workload made again while its old pool was terminating gets
// its new pool the moment the old one is gone.
func enqueueOwner(kind string) handler.EventHandler {
	return handler.EnqueueRequestsFromMapFunc(func(_ context.Context, obj client.Object) []reconcile.Request {
		pool, ok := obj.(*v1.IPPool)
		if !ok {
			return nil
		}
		w, ok := apppool.OwnerOf(pool)
		if !ok || w.Kind != kind {
			return nil
		}
		return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: w.Namespace, Name: w.Name}}}
	})
}

// poolDeletes lets only deletions through: a pool's status changes with every allocation,
// and each reconcile of a workload reads every pool from the API.
var poolDeletes = predicate.Funcs{
	CreateFunc:  func(event.CreateEvent) bool { return false },
	UpdateFunc:  func(event.UpdateEvent) bool { return false },
	DeleteFunc:  func(event.DeleteEvent) bool { return true },
	GenericFunc: func(event.GenericEvent) bool { return false },
}

func (r *appPools) get(ctx context.Context, req reconcile.Request) (client.Object, map[string]string, int32, *metav1.LabelSelector, error) {
	replicas := func(p *int32) int32 {
		if p == nil {
			return 1
		}
		return *p
	}
	if r.kind == "StatefulSet" {
		s := &appsv1.StatefulSet{}
		err := r.c.Get(ctx, req.NamespacedName, s)
		return s, s.Spec.Template.Annotations, replicas(s.Spec.Replicas), s.Spec.Selector, err
	}
	d := &appsv1.Deployment{}
	err := r.c.Get(ctx, req.NamespacedName, d)
	return d, d.Spec.Template.Annotations, replicas(d.Spec.Replicas), d.Spec.Selector, err
}

func (r *appPools) ensurePool(ctx context.Context, w apppool.Workload, ifName string, family v1.IPFamily, subnetName string, size int,
	reclaim bool, selector *metav1.LabelSelector) error {
	r.carving.Lock()
	defer r.carving.Unlock()
	subnet := &v1.Subnet{}
	if err := r.api.Get(ctx, client.ObjectKey{Name: subnetName}, subnet); err != nil {
		return fmt.Errorf("reading Subnet %s: %w", subnetName, err)
	}
	var pools v1.IPPoolList
	if err := r.api.List(ctx, &pools); err != nil {
		return fmt.Errorf("listing IPPools to carve from Subnet %s: %w", subnetName, err)
	}
	name := w.PoolNameFor(ifName, family)
	var current *v1.IPPool
	for i := range pools.Items {
		if pools.Items[i].Name == name {
			current = &pools.Items[i]
		}
	}
	if current != nil && current.DeletionTimestamp != nil {
		return &poolTerminating{pool: name, kind: w.Kind}
	}
	ips, err := apppool.Carve(subnet, pools.Items, current, size)
	if err != nil {
		return err
	}
	if current != nil {
		if slices.Equal(current.Spec.IPs, ips) {
			return nil
		}
		current.Spec.IPs = ips
		if err := r.c.Update(ctx, current); err != nil {
			return err // the webhook refuses to drop held addresses
		}
		r.changes.WithLabelValues(appPoolResized).Inc()
		return nil
	}
	pool := &v1.IPPool{
		ObjectMeta: metav1.ObjectMeta{Name: name,
			Labels:      map[string]string{apppool.LabelOwnerHash: w.Hash(), apppool.LabelSubnet: subnetName, apppool.LabelReclaim: fmt.Sprint(reclaim)},
			Annotations: map[string]string{apppool.AnnotationOwner: w.String()}},
		Spec: v1.IPPoolSpec{Subnet: subnet.Spec.Subnet, IPs: ips, Gateway: subnet.Spec.Gateway, Vlan: subnet.Spec.Vlan,
			PodAffinity:       selector,
			NamespaceAffinity: &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": w.Namespace}}},
	}
	if err := r.c.Create(ctx, pool); err != nil {
		return client.IgnoreAlreadyExists(err)
	}
	r.changes.WithLabelValues(appPoolCreated).Inc()
	return nil
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
