package controller

import (
	"context"
	"fmt"

	nadv1 "github.com/k8snetworkplumbingwg/network-attachment-definition-client/pkg/apis/k8s.cni.cncf.io/v1"
	"go.uber.org/zap"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/core/nadgen"
)

// nadResult is what became of one target NAD.
type nadResult struct {
	written bool
	// conflict: a NAD of the name is there and is not the network's (who it is)
	conflict string
	// missing: the namespace does not exist
	missing bool
	err     error
}

// syncNAD makes the NAD in ns what the network renders, unless a NAD there of that name
// is someone else's.
func (r *networkNADs) syncNAD(ctx context.Context, net *v1.UnderlayNetwork, ns string, rendered nadgen.Rendered) nadResult {
	key := client.ObjectKey{Namespace: ns, Name: rendered.Name}
	cur := &nadv1.NetworkAttachmentDefinition{}
	err := r.c.Get(ctx, key, cur)
	if apierrors.IsNotFound(err) {
		if err = r.c.Create(ctx, desiredNAD(net, ns, rendered)); err == nil {
			r.log.Info("wrote a NetworkAttachmentDefinition", zap.String("network", net.Name), zap.String("nad", ns+"/"+rendered.Name))
			r.events.Eventf(net, nil, "Normal", "NADCreated", "CreateNAD", "created NetworkAttachmentDefinition %s/%s", ns, rendered.Name)
			return nadResult{written: true}
		}
		switch {
		case apierrors.IsAlreadyExists(err):
			// not in the cache, so not labelled as ours: read what is there
			err = r.api.Get(ctx, key, cur)
		case apierrors.IsNotFound(err):
			return nadResult{missing: true}
		}
	}
	if err != nil {
		return nadResult{err: fmt.Errorf("NetworkAttachmentDefinition %s/%s: %w", ns, rendered.Name, err)}
	}
	return r.updateNAD(ctx, net, cur, rendered)
}

// updateNAD brings a NAD that exists back to what the network renders, if it is the
// network's; one the network does not own is reported and left alone.
func (r *networkNADs) updateNAD(ctx context.Context, net *v1.UnderlayNetwork, cur *nadv1.NetworkAttachmentDefinition, rendered nadgen.Rendered) nadResult {
	who := ownerOf(cur, net)
	if who == foreign {
		return nadResult{conflict: describeOwner(cur)}
	}
	want := desiredNAD(net, cur.Namespace, rendered)
	if who == owned && inSync(cur, want) {
		return nadResult{written: true}
	}
	// written for this very generation, yet not what it renders: someone edited it
	handEdited := who == owned && cur.Annotations[v1.NetworkGenerationAnnotation] == want.Annotations[v1.NetworkGenerationAnnotation]
	updated := cur.DeepCopy()
	apply(updated, want)
	if err := r.c.Update(ctx, updated); err != nil {
		return nadResult{err: fmt.Errorf("NetworkAttachmentDefinition %s/%s: %w", cur.Namespace, cur.Name, err)}
	}
	key := cur.Namespace + "/" + cur.Name
	switch {
	case handEdited:
		r.log.Warn("put back a NetworkAttachmentDefinition edited by hand", zap.String("network", net.Name), zap.String("nad", key))
		r.events.Eventf(net, nil, "Warning", "NADRestored", "RestoreNAD",
			"NetworkAttachmentDefinition %s was edited by hand and is put back as the network renders it: change UnderlayNetwork %s instead", key, net.Name)
	case who == stale:
		r.events.Eventf(net, nil, "Normal", "NADAdopted", "AdoptNAD", "adopted NetworkAttachmentDefinition %s, left by a deleted UnderlayNetwork of the same name", key)
	default:
		r.events.Eventf(net, nil, "Normal", "NADUpdated", "UpdateNAD", "updated NetworkAttachmentDefinition %s to generation %d", key, net.Generation)
	}
	return nadResult{written: true}
}

// desiredNAD is the NAD the network renders in ns.
func desiredNAD(net *v1.UnderlayNetwork, ns string, rendered nadgen.Rendered) *nadv1.NetworkAttachmentDefinition {
	return rendered.NAD(net, ns)
}

// ownerReference makes the network the NAD's controller.
func ownerReference(net *v1.UnderlayNetwork) metav1.OwnerReference { return nadgen.OwnerReference(net) }

// managedAnnotations are the NAD annotations the network decides: the rest (a user's own)
// are kept as they are.
var managedAnnotations = nadgen.ManagedAnnotations

// inSync: cur holds what want says, in every part the network decides.
func inSync(cur, want *nadv1.NetworkAttachmentDefinition) bool {
	if cur.Spec.Config != want.Spec.Config || cur.Labels[v1.NetworkLabel] != want.Labels[v1.NetworkLabel] {
		return false
	}
	for _, k := range managedAnnotations {
		if cur.Annotations[k] != want.Annotations[k] {
			return false
		}
	}
	return true
}

// apply writes want's parts into cur and makes the network its controller, keeping the
// user's own labels, annotations and other owners.
func apply(cur, want *nadv1.NetworkAttachmentDefinition) {
	cur.Spec.Config = want.Spec.Config
	if cur.Labels == nil {
		cur.Labels = map[string]string{}
	}
	cur.Labels[v1.NetworkLabel] = want.Labels[v1.NetworkLabel]
	if cur.Annotations == nil {
		cur.Annotations = map[string]string{}
	}
	for _, k := range managedAnnotations {
		if v, ok := want.Annotations[k]; ok {
			cur.Annotations[k] = v
		} else {
			delete(cur.Annotations, k)
		}
	}
	refs := []metav1.OwnerReference{want.OwnerReferences[0]}
	for _, ref := range cur.OwnerReferences {
		if ref.Controller == nil || !*ref.Controller {
			refs = append(refs, ref)
		}
	}
	cur.OwnerReferences = refs
}

// ownership of a NAD, as far as one network is concerned.
type ownership int

const (
	foreign ownership = iota // not the network's: never written
	owned                    // its controller is this network
	// stale: its controller is a deleted UnderlayNetwork of the same name (names are
	// unique, so that one is gone): the garbage collector would delete it, the network
	// takes it over instead
	stale
)

func ownerOf(nad *nadv1.NetworkAttachmentDefinition, net *v1.UnderlayNetwork) ownership {
	ref := metav1.GetControllerOf(nad)
	switch {
	case ref == nil || ref.Kind != "UnderlayNetwork" || ref.APIVersion != v1.GroupVersion.String() || ref.Name != net.Name:
		return foreign
	case ref.UID == net.UID:
		return owned
	}
	return stale
}

// describeOwner says whose a NAD in the way is, for the event and the condition.
func describeOwner(nad *nadv1.NetworkAttachmentDefinition) string {
	if ref := metav1.GetControllerOf(nad); ref != nil {
		return fmt.Sprintf("%s/%s is controlled by %s %s", nad.Namespace, nad.Name, ref.Kind, ref.Name)
	}
	return fmt.Sprintf("%s/%s was not made by underpool (no controller ownerReference)", nad.Namespace, nad.Name)
}
