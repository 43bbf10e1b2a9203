package webhook

import (
	"context"
	"errors"
	"strings"

	"k8s.io/apimachinery/pkg/api/equality"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/core/allocator"
)

// validateReservedIP refuses a ReservedIP any entry of which is not a plain address or an
// ordered inclusive range of one family, naming each such entry by index with its fix
// ("spec.ips[1]: range 10.0.0.30-10.0.0.20 is reversed: write 10.0.0.20-10.0.0.30"). The
// CRD's CEL rules catch most of these first; what they cannot express (the order of an
// IPv6 range) only the webhook does. ipamd reads what gets past both fail closed anyway.
func validateReservedIP(r *v1.ReservedIP) error {
	_, errs := allocator.ParseReservations("spec.ips", r.Spec.IPs)
	if len(errs) == 0 {
		return nil
	}
	msgs := make([]string, len(errs))
	for i, e := range errs {
		msgs[i] = e.Error()
	}
	return errors.New(strings.Join(msgs, "; "))
}

// reservedValidator serves ReservedIP admission.
type reservedValidator struct{ metrics *Metrics }

func (v reservedValidator) ValidateCreate(_ context.Context, r *v1.ReservedIP) (admission.Warnings, error) {
	return nil, v.metrics.reject("ReservedIP", r.Name, validateReservedIP(r))
}

// ValidateUpdate checks spec changes only: a label or finalizer edit of an object that
// got in before these rules must still pass (ipamd reserves its good entries regardless).
func (v reservedValidator) ValidateUpdate(_ context.Context, old, r *v1.ReservedIP) (admission.Warnings, error) {
	if equality.Semantic.DeepEqual(old.Spec, r.Spec) {
		return nil, nil
	}
	return nil, v.metrics.reject("ReservedIP", r.Name, validateReservedIP(r))
}

func (reservedValidator) ValidateDelete(context.Context, *v1.ReservedIP) (admission.Warnings, error) {
	return nil, nil
}
