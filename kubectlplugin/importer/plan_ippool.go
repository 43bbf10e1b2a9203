package importer

import (
	"fmt"

	"k8s.io/apimachinery/pkg/api/equality"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/core/allocator"
)

// ipPools parses each pool to import, then refuses name clashes and overlaps, with
// existing pools and among the imported ones.
func (pl *planner) ipPools() error {
	existing := &v1.IPPoolList{}
	if err := pl.c.List(pl.ctx, existing); err != nil {
		return fmt.Errorf("listing IPPools: %w", err)
	}
	pl.existing, pl.byName, pl.views = existing.Items, map[string]*v1.IPPool{}, map[string]*allocator.PoolView{}
	for i := range pl.existing {
		pl.byName[pl.existing[i].Name] = &pl.existing[i]
	}
	from := map[string]string{}
	var imported []namedFootprint
	for _, pp := range pl.st.pools {
		if prev, dup := from[pp.name]; dup {
			return fmt.Errorf("%s and %s would both become IPPool %s: import them with different --prefix values, one at a time", prev, pp.from, pp.name)
		}
		from[pp.name] = pp.from
		view, err := allocator.NewPool(pp.name, &pp.spec)
		if err != nil {
			return fmt.Errorf("%s cannot become IPPool %s: %v: fix the peer object first", pp.from, pp.name, err)
		}
		pl.views[pp.name] = view
		fp := namedFootprint{name: pp.name, from: pp.from, fp: allocator.Footprint{Prefix: view.Prefix, Set: view.Usable}}
		if err := pl.clashes(pp, fp, imported); err != nil {
			return err
		}
		imported = append(imported, fp)
	}
	return nil
}

type namedFootprint struct {
	name, from string
	fp         allocator.Footprint
}

// clashes refuses a pool whose name an existing pool of another spec holds, or whose
// addresses an existing pool or an already imported one shares.
func (pl *planner) clashes(pp peerPool, fp namedFootprint, imported []namedFootprint) error {
	if cur, ok := pl.byName[pp.name]; ok && !equality.Semantic.DeepEqual(cur.Spec, pp.spec) {
		return fmt.Errorf("%s would become IPPool %s, but IPPool %s exists with another spec (subnet %s): delete it if it is unused, or pass --prefix to import under other names", pp.from, pp.name, pp.name, cur.Spec.Subnet)
	}
	for i := range pl.existing {
		other := &pl.existing[i]
		if other.Name == pp.name {
			continue
		}
		ofp, ok := allocator.FootprintOf(other.Name, &other.Spec)
		if !ok {
			continue
		}
		if ip, shared := allocator.FirstShared(fp.fp, ofp); shared {
			return fmt.Errorf("%s would become IPPool %s, whose addresses overlap IPPool %s (first shared address %s): narrow IPPool %s with spec.ips/spec.excludeIPs or delete it, then import again", pp.from, pp.name, other.Name, ip, other.Name)
		}
	}
	for _, o := range imported {
		if ip, shared := allocator.FirstShared(fp.fp, o.fp); shared {
			return fmt.Errorf("%s and %s overlap (first shared address %s): underpool pools may not share addresses; narrow one of them (ips/excludeIPs) before importing", o.from, pp.from, ip)
		}
	}
	return nil
}
