package controller

import (
	"context"
	"errors"
	"sync"
	"time"

	nadv1 "github.com/k8snetworkplumbingwg/network-attachment-definition-client/pkg/apis/k8s.cni.cncf.io/v1"
	"go.uber.org/zap"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/core/nadgen"
)

// The NADs of UnderlayNetworks: written into any namespace a network names, read back
// through a cache that holds only NADs labelled underpool.io/network (run.go), and
// deleted by the garbage collector with their network (their controller ownerReference).
// +kubebuilder:rbac:groups=underpool.io,resources=underlaynetworks,verbs=get;list;watch
// +kubebuilder:rbac:groups=underpool.io,resources=underlaynetworks/status,verbs=update
// +kubebuilder:rbac:groups=k8s.cni.cncf.io,resources=network-attachment-definitions,verbs=get;list;watch;create;update;delete

// networkRecheck is how soon a network whose NADs could not all be written is looked at
// again: a missing namespace may be made, a NAD in the way removed, and neither is an
// event this controller watches (it caches only its own NADs, and no namespaces).
const networkRecheck = 30 * time.Second

// networkNADs renders each UnderlayNetwork (core/nadgen) into a NetworkAttachmentDefinition
// in every namespace it names, owned by it (controller ownerReference), and keeps them as
// rendered: a spec change is written, a hand edit is put back with a Warning event, a NAD
// no longer wanted is deleted. A NAD of the same name that is not the network's is never
// touched: the network's Ready condition and a Warning event name it. Status lists the
// NADs written.
type networkNADs struct {
	c      client.Client // the cache holds only labelled NADs
	api    client.Reader // uncached: a NAD in the way is not in the cache
	events events.EventRecorder
	log    *zap.Logger
	// kindMissing: the NetworkAttachmentDefinition CRD was not served when the controller
	// started (multus not installed); networks report it and nothing is written
	kindMissing bool

	mu       sync.Mutex
	reported map[string]string // network -> the problems last reported in events
}

func (r *networkNADs) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	net := &v1.UnderlayNetwork{}
	if err := r.c.Get(ctx, req.NamespacedName, net); err != nil {
		if apierrors.IsNotFound(err) {
			r.forget(req.Name) // its NADs go with it: the garbage collector follows their ownerReferences
		}
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	if net.DeletionTimestamp != nil {
		return reconcile.Result{}, nil
	}
	if r.kindMissing {
		return reconcile.Result{}, r.setStatus(ctx, net, outcome{kindMissing: true})
	}
	rendered, err := nadgen.Render(net)
	if err != nil { // the webhook refuses these; one written while it was away lands here
		return reconcile.Result{}, r.setStatus(ctx, net, outcome{invalid: err})
	}
	var out outcome
	for _, ns := range net.Spec.Namespaces {
		out.add(ns, rendered.Name, r.syncNAD(ctx, net, ns, rendered))
	}
	out.removeFailed = r.removeUnwanted(ctx, net, rendered.Name)
	if err := r.setStatus(ctx, net, out); err != nil {
		return reconcile.Result{}, err
	}
	switch {
	case len(out.failed) > 0 || out.removeFailed != nil:
		return reconcile.Result{}, errors.Join(append(out.failedErrors(), out.removeFailed)...) // backoff
	case len(out.conflicts) > 0 || len(out.missing) > 0:
		return reconcile.Result{RequeueAfter: networkRecheck}, nil
	}
	return reconcile.Result{}, nil
}

// removeUnwanted deletes the network's own NADs that it no longer renders: a namespace
// dropped from spec.namespaces, or every old NAD after spec.nadName changed.
func (r *networkNADs) removeUnwanted(ctx context.Context, net *v1.UnderlayNetwork, name string) error {
	var list nadv1.NetworkAttachmentDefinitionList
	if err := r.c.List(ctx, &list, client.MatchingLabels{v1.NetworkLabel: net.Name}); err != nil {
		return err
	}
	wanted := map[string]bool{}
	for _, ns := range net.Spec.Namespaces {
		wanted[ns+"/"+name] = true
	}
	var errs []error
	for i := range list.Items {
		nad := &list.Items[i]
		if wanted[nad.Namespace+"/"+nad.Name] || ownerOf(nad, net) != owned {
			continue
		}
		err := r.c.Delete(ctx, nad, client.Preconditions{UID: &nad.UID})
		if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			errs = append(errs, err)
			continue
		}
		r.log.Info("deleted a NetworkAttachmentDefinition its network no longer renders",
			zap.String("network", net.Name), zap.String("nad", nad.Namespace+"/"+nad.Name))
		r.events.Eventf(net, nil, "Normal", "NADDeleted", "DeleteNAD", "deleted NetworkAttachmentDefinition %s/%s: the network no longer renders it", nad.Namespace, nad.Name)
	}
	return errors.Join(errs...)
}

func (r *networkNADs) forget(name string) {
	r.mu.Lock()
	delete(r.reported, name)
	r.mu.Unlock()
}

// firstReport says whether problems are news for the network (not what the last
// reconcile reported already), and records them: a network waiting 30 s at a time for a
// namespace to appear does not repeat its event every time.
func (r *networkNADs) firstReport(name, problems string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.reported == nil {
		r.reported = map[string]string{}
	}
	if r.reported[name] == problems {
		return false
	}
	r.reported[name] = problems
	return true
}

// networksOfNAD maps a NAD event to the network its label names and the one that
// controls it (a hand edit may have changed either): both look again.
func networksOfNAD(_ context.Context, obj client.Object) []reconcile.Request {
	var out []reconcile.Request
	if name := obj.GetLabels()[v1.NetworkLabel]; name != "" {
		out = append(out, reconcile.Request{NamespacedName: client.ObjectKey{Name: name}})
	}
	if ref := metav1.GetControllerOf(obj); ref != nil && ref.Kind == "UnderlayNetwork" && ref.APIVersion == v1.GroupVersion.String() &&
		ref.Name != obj.GetLabels()[v1.NetworkLabel] {
		out = append(out, reconcile.Request{NamespacedName: client.ObjectKey{Name: ref.Name}})
	}
	return out
}
