package webhook

import (
	"context"
	"fmt"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/ipamd/store"
)

// poolValidator serves IPPool admission. It reads other pools from the API directly:
// the webhook decides on overlaps, so it must not trust a lagging cache.
type poolValidator struct {
	api     client.Reader
	metrics *Metrics
}

func (v *poolValidator) others(ctx context.Context) ([]v1.IPPool, error) {
	var list v1.IPPoolList
	if err := v.api.List(ctx, &list); err != nil {
		return nil, fmt.Errorf("listing IPPools to check for overlaps: %w", err)
	}
	return list.Items, nil
}

func (v *poolValidator) ValidateCreate(ctx context.Context, p *v1.IPPool) (admission.Warnings, error) {
	others, err := v.others(ctx)
	if err != nil {
		return nil, err
	}
	return nil, v.metrics.reject("IPPool", p.Name, validatePool(p, nil, "", others))
}

func (v *poolValidator) ValidateUpdate(ctx context.Context, old, p *v1.IPPool) (admission.Warnings, error) {
	// An update that keeps the spec (finalizers, labels; status is a subresource this
	// webhook never sees) adds no address, and refusing it over an overlap that already
	// exists would only keep a finalizer from being added or a deleted pool from going.
	// Any spec change is checked, of a pool being deleted too: it still holds addresses,
	// and ipamd blocks whatever it covers until it is gone.
	if equality.Semantic.DeepEqual(old.Spec, p.Spec) {
		return nil, nil
	}
	others, err := v.others(ctx)
	if err != nil {
		return nil, err
	}
	held, err := v.allocated(ctx, old)
	if err != nil {
		return nil, err
	}
	return nil, v.metrics.reject("IPPool", p.Name, validatePool(p, old, held, others))
}

// allocated reads what the pool holds from its PoolAllocation, uncached: none, or one left
// by an earlier pool of the name, holds nothing.
func (v *poolValidator) allocated(ctx context.Context, pool *v1.IPPool) (string, error) {
	state, err := store.ReadState(ctx, v.api, pool)
	if err != nil {
		return "", fmt.Errorf("checking the new spec of %s keeps its allocated addresses: %w", pool.Name, err)
	}
	return state.Allocated, nil
}

func (v *poolValidator) ValidateDelete(context.Context, *v1.IPPool) (admission.Warnings, error) {
	return nil, nil // the pool-protection finalizer holds a pool with live allocations
}

// subnetValidator serves Subnet admission.
type subnetValidator struct {
	api     client.Reader
	metrics *Metrics
}

func (v *subnetValidator) pools(ctx context.Context) ([]v1.IPPool, error) {
	var list v1.IPPoolList
	err := v.api.List(ctx, &list)
	return list.Items, err
}

func (v *subnetValidator) ValidateCreate(_ context.Context, s *v1.Subnet) (admission.Warnings, error) {
	return nil, v.metrics.reject("Subnet", s.Name, validateSubnet(s, nil, nil, false))
}

func (v *subnetValidator) ValidateUpdate(ctx context.Context, old, s *v1.Subnet) (admission.Warnings, error) {
	pools, err := v.pools(ctx)
	if err != nil {
		return nil, err
	}
	return nil, v.metrics.reject("Subnet", s.Name, validateSubnet(s, old, pools, false))
}

func (v *subnetValidator) ValidateDelete(ctx context.Context, s *v1.Subnet) (admission.Warnings, error) {
	pools, err := v.pools(ctx)
	if err != nil {
		return nil, err
	}
	return nil, v.metrics.reject("Subnet", s.Name, validateSubnet(s, s, pools, true))
}

// reject counts a refusal (underpool_webhook_rejections_total) and makes its answer.
func (m *Metrics) reject(kind, name string, err error) error {
	m.rejected(kind, err)
	return invalid(name, err)
}

func invalid(name string, err error) error {
	if err == nil {
		return nil
	}
	return apierrors.NewBadRequest(fmt.Sprintf("%s: %v", name, err))
}
