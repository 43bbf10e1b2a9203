package controller

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"go.uber.org/zap"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/underpool/underpool/api/v1"
)

// outcome is what one reconcile of a network did, NAD by NAD.
type outcome struct {
	written      []string // "namespace/name", in sync
	conflicts    []string // who is in the way, per NAD
	missing      []string // namespaces that do not exist
	failed       map[string]error
	removeFailed error
	invalid      error // the spec does not render
	kindMissing  bool
}

func (o *outcome) add(ns, name string, r nadResult) {
	switch {
	case r.written:
		o.written = append(o.written, ns+"/"+name)
	case r.conflict != "":
		o.conflicts = append(o.conflicts, r.conflict)
	case r.missing:
		o.missing = append(o.missing, ns)
	default:
		if o.failed == nil {
			o.failed = map[string]error{}
		}
		o.failed[ns+"/"+name] = r.err
	}
}

func (o *outcome) failedErrors() []error {
	keys := make([]string, 0, len(o.failed))
	for k := range o.failed {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	errs := make([]error, 0, len(keys))
	for _, k := range keys {
		errs = append(errs, o.failed[k])
	}
	return errs
}

// ready is the network's Ready condition: True only when every target namespace holds
// its NAD as rendered. The reason is the first problem of: the spec, multus missing, a
// NAD in the way, a missing namespace, a failed write; the message names all of them.
func (o *outcome) ready() metav1.Condition {
	c := metav1.Condition{Type: v1.NetworkReady, Status: metav1.ConditionFalse}
	var parts []string
	switch {
	case o.invalid != nil:
		c.Reason, c.Message = v1.NetworkInvalidSpec, fmt.Sprintf("the spec does not render: %v", o.invalid)
		return c
	case o.kindMissing:
		c.Reason, c.Message = v1.NetworkNADKindMissing,
			"the NetworkAttachmentDefinition CRD (k8s.cni.cncf.io/v1) was not served when the underpool controller started: install multus, then restart the controller"
		return c
	}
	if len(o.conflicts) > 0 {
		c.Reason = v1.NetworkNADNotOwned
		parts = append(parts, fmt.Sprintf("left alone, as they are not this network's: %s (delete or rename them, or set spec.nadName to another name)", strings.Join(o.conflicts, "; ")))
	}
	if len(o.missing) > 0 {
		c.Reason = or(c.Reason, v1.NetworkNamespaceNotFound)
		parts = append(parts, fmt.Sprintf("namespaces not found: %s (create them, or remove them from spec.namespaces)", strings.Join(o.missing, ", ")))
	}
	if len(o.failed) > 0 || o.removeFailed != nil {
		c.Reason = or(c.Reason, v1.NetworkWriteFailed)
		errs := o.failedErrors()
		if o.removeFailed != nil {
			errs = append(errs, o.removeFailed)
		}
		msgs := make([]string, len(errs))
		for i, e := range errs {
			msgs[i] = e.Error()
		}
		parts = append(parts, "writes failed (retried): "+strings.Join(msgs, "; "))
	}
	if c.Reason == "" {
		c.Status, c.Reason = metav1.ConditionTrue, v1.NetworkSynced
		parts = append(parts, fmt.Sprintf("%d NetworkAttachmentDefinitions written as the spec renders", len(o.written)))
	}
	c.Message = truncate(strings.Join(parts, "; "), 1024)
	return c
}

// setStatus writes the network's status when it changed, and tells of new problems in a
// Warning event.
func (r *networkNADs) setStatus(ctx context.Context, net *v1.UnderlayNetwork, o outcome) error {
	ready := o.ready()
	problems := ""
	if ready.Status != metav1.ConditionTrue {
		problems = ready.Reason + ": " + ready.Message
	}
	if r.firstReport(net.Name, problems) && problems != "" {
		r.log.Warn("UnderlayNetwork not ready", zap.String("network", net.Name), zap.String("reason", ready.Reason), zap.String("message", ready.Message))
		r.events.Eventf(net, nil, "Warning", ready.Reason, "WriteNADs", "%s", ready.Message)
	}
	written := slices.Clone(o.written)
	slices.Sort(written)
	updated := net.DeepCopy()
	updated.Status.ObservedGeneration = net.Generation
	updated.Status.NetworkAttachmentDefinitions = written
	ready.ObservedGeneration = net.Generation
	meta.SetStatusCondition(&updated.Status.Conditions, ready)
	if equality.Semantic.DeepEqual(updated.Status, net.Status) {
		return nil
	}
	if err := r.c.Status().Update(ctx, updated); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("UnderlayNetwork %s status: %w", net.Name, err)
	}
	return nil
}

func or(s, fallback string) string {
	if s == "" {
		return fallback
	}
	return s
}

// truncate keeps a condition message within a size a status is read at.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-3] + "..."
}
