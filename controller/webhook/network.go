package webhook

import (
	"context"
	"fmt"
	"net/netip"
	"strings"

	"k8s.io/apimachinery/pkg/api/equality"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/core/nadgen"
)

// networkValidator serves UnderlayNetwork admission: the spec must render (nadgen.Validate,
// the plugin's own rules in the CRD's field names), no other network may render a NAD of
// the same name into a namespace it names (the second would only ever report the first's
// NAD in its way), and a pool named for one family must not be of the other. A pool that
// does not exist yet is only warned about: pools are often made after the network.
type networkValidator struct {
	api     client.Reader
	metrics *Metrics
}

func (v *networkValidator) ValidateCreate(ctx context.Context, n *v1.UnderlayNetwork) (admission.Warnings, error) {
	return v.validate(ctx, n)
}

// ValidateUpdate checks spec changes only: a label edit of a network that got in before
// a rule must still pass.
func (v *networkValidator) ValidateUpdate(ctx context.Context, old, n *v1.UnderlayNetwork) (admission.Warnings, error) {
	if equality.Semantic.DeepEqual(old.Spec, n.Spec) {
		return nil, nil
	}
	return v.validate(ctx, n)
}

func (v *networkValidator) ValidateDelete(context.Context, *v1.UnderlayNetwork) (admission.Warnings, error) {
	return nil, nil
}

func (v *networkValidator) validate(ctx context.Context, n *v1.UnderlayNetwork) (admission.Warnings, error) {
	if err := nadgen.Validate(&n.Spec); err != nil {
		return nil, v.metrics.reject("UnderlayNetwork", n.Name, err)
	}
	var networks v1.UnderlayNetworkList
	if err := v.api.List(ctx, &networks); err != nil {
		return nil, fmt.Errorf("listing UnderlayNetworks to check NAD names: %w", err)
	}
	if err := sameNAD(n, networks.Items); err != nil {
		return nil, v.metrics.reject("UnderlayNetwork", n.Name, err)
	}
	var pools v1.IPPoolList
	if err := v.api.List(ctx, &pools); err != nil {
		return nil, fmt.Errorf("listing IPPools to check the network's pools: %w", err)
	}
	warnings, err := checkPools(n.Spec.IPAM, pools.Items)
	warnings = append(warnings, routeFamilyWarnings(n.Spec)...)
	return warnings, v.metrics.reject("UnderlayNetwork", n.Name, err)
}

// routeFamilyWarnings warns of a route of a family the network names no pool of: ADD
// refuses it for a pod with no address of that family, and only a pod annotation or a
// namespace or cluster default can give one. Not refused: those may be meant.
func routeFamilyWarnings(s v1.UnderlayNetworkSpec) admission.Warnings {
	if len(s.IPAM.IPv4Pools)+len(s.IPAM.IPv6Pools) == 0 {
		return nil // the pools come from elsewhere: nothing to compare with
	}
	var warnings admission.Warnings
	for i, r := range s.Routes {
		p, err := netip.ParsePrefix(r.Dst)
		if err != nil {
			continue
		}
		is4 := p.Addr().Is4()
		if (is4 && len(s.IPAM.IPv4Pools) == 0) || (!is4 && len(s.IPAM.IPv6Pools) == 0) {
			warnings = append(warnings, fmt.Sprintf("spec.routes[%d]: %s is %s and spec.ipam names no %s pool: ADD fails for a pod that gets no %s address elsewhere (pod annotation, namespace or cluster default); add one to %s, or remove the route",
				i, r.Dst, family(p), family(p), family(p), otherList(!is4)))
		}
	}
	return warnings
}

// sameNAD refuses a network that renders a NAD another network renders too.
func sameNAD(n *v1.UnderlayNetwork, others []v1.UnderlayNetwork) error {
	mine := map[string]bool{}
	for _, ns := range n.Spec.Namespaces {
		mine[ns] = true
	}
	for i := range others {
		o := &others[i]
		if o.Name == n.Name || o.NADName() != n.NADName() {
			continue
		}
		for _, ns := range o.Spec.Namespaces {
			if mine[ns] {
				return fmt.Errorf("spec.namespaces: UnderlayNetwork %s already renders NetworkAttachmentDefinition %s/%s: set spec.nadName to another name, or drop %s from one of them",
					o.Name, ns, n.NADName(), ns)
			}
		}
	}
	return nil
}

// checkPools refuses a pool listed under the other family's key, and warns of pools that
// do not exist (yet).
func checkPools(ipam v1.NetworkIPAM, pools []v1.IPPool) (admission.Warnings, error) {
	byName := map[string]*v1.IPPool{}
	for i := range pools {
		byName[pools[i].Name] = &pools[i]
	}
	var warnings admission.Warnings
	var errs []string
	for _, f := range []struct {
		field string
		names []string
		is4   bool
	}{{"spec.ipam.ipv4Pools", ipam.IPv4Pools, true}, {"spec.ipam.ipv6Pools", ipam.IPv6Pools, false}} {
		for i, name := range f.names {
			pool, ok := byName[name]
			if !ok {
				warnings = append(warnings, fmt.Sprintf("%s[%d]: IPPool %s does not exist (yet): pods of the network get no address from it until it does", f.field, i, name))
				continue
			}
			if p, err := netip.ParsePrefix(pool.Spec.Subnet); err == nil && p.Addr().Is4() != f.is4 {
				errs = append(errs, fmt.Sprintf("%s[%d]: IPPool %s is %s (subnet %s): move it to %s",
					f.field, i, name, family(p), pool.Spec.Subnet, otherList(f.is4)))
			}
		}
	}
	if len(errs) > 0 {
		return warnings, fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return warnings, nil
}

func family(p netip.Prefix) string {
	if p.Addr().Is4() {
		return "IPv4"
	}
	return "IPv6"
}

func otherList(is4 bool) string {
	if is4 {
		return "spec.ipam.ipv6Pools"
	}
	return "spec.ipam.ipv4Pools"
}
