package importer

import (
	"fmt"
	"net/netip"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/core/allocator"
)

// poolStatus plans each pool's allocation state (its PoolAllocation's state.allocated): a
// new pool's marks the addresses kept for it; an identical existing one's gains those it
// does not mark yet, unless it marks one for another pod.
func (pl *planner) poolStatus() error {
	for _, pp := range pl.st.pools {
		set := allocator.RunSet{}
		if pl.allocated[pp.name] != nil {
			set = *pl.allocated[pp.name]
		}
		if cur, exists := pl.byName[pp.name]; exists {
			pl.p.existing[pp.name] = cur.UID
			if err := pl.mark(pp, cur, set); err != nil {
				return err
			}
			continue
		}
		view := pl.views[pp.name]
		// created refusing allocations: ipamd would start it from an empty state and could
		// hand out an imported live address before the import writes its state
		pool := &v1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: pp.name, Labels: importedLabel(),
			Annotations: map[string]string{v1.ImportingAnnotation: "true"}}, Spec: pp.spec}
		pl.p.pools = append(pl.p.pools, newPool{pool: pool, allocated: set})
		pl.p.report.change(ActionCreate, "IPPool", pp.name, pp.from, fmt.Sprintf("%s, %d allocated%s", pp.spec.Subnet, set.Count(), listed(view, set)))
	}
	return nil
}

// mark plans the offsets of set the existing pool cur does not mark yet.
func (pl *planner) mark(pp peerPool, cur *v1.IPPool, set allocator.RunSet) error {
	view := pl.views[pp.name]
	alloc, err := readAllocation(pl.ctx, pl.c, cur.Name)
	if err != nil {
		return err
	}
	// none, or an earlier pool's of this name, is nothing allocated; offsets past the
	// subnet are a corrupt state, not "all taken"
	have, err := view.ParseAllocated(v1.StateOf(cur, alloc).Allocated)
	if err != nil {
		return fmt.Errorf("PoolAllocation %s state.allocated %q does not parse: %v: fix it or delete the pool", cur.Name, v1.StateOf(cur, alloc).Allocated, err)
	}
	var add []uint64
	for _, r := range set.Runs() {
		for o := r.Lo; ; o++ {
			if !have.Contains(o) {
				add = append(add, o)
			} else if err := pl.alreadyMarked(cur, view.Addr(o)); err != nil {
				return err
			}
			if o == r.Hi {
				break
			}
		}
	}
	importing := cur.Annotations[v1.ImportingAnnotation] != ""
	if len(add) == 0 && !importing {
		pl.p.report.change(ActionUnchanged, "IPPool", pp.name, pp.from, pp.spec.Subnet)
		return nil
	}
	pl.p.marks = append(pl.p.marks, poolMark{name: pp.name, prefix: view.Prefix, offs: add, importing: importing})
	addSet := allocator.NewRunSet()
	for _, o := range add {
		addSet.Add(o)
	}
	detail := fmt.Sprintf("state.allocated gains %d%s", len(add), listed(view, addSet))
	if importing {
		detail += "; an earlier import's pool: it hands out addresses once its state is written"
	}
	pl.p.report.change(ActionMark, "IPPool", pp.name, pp.from, detail)
	return nil
}

// alreadyMarked checks an address the existing pool marks already: that is fine when the
// pod the peer gave it to records it (an Endpoint left as it is), or when nobody does and
// the pool is one an import created (a re-run after an import that failed between the
// pool and the Endpoint); otherwise the pool marks it for another pod.
func (pl *planner) alreadyMarked(cur *v1.IPPool, addr netip.Addr) error {
	ep := pl.holderOf(addr, cur.Name)
	if ep == nil || pl.unchangedEP[podKey{ep.Namespace, ep.Name}] {
		return nil
	}
	holder, err := pl.recordedHolder(cur.Name, addr)
	if err != nil {
		return err
	}
	if holder == "" && cur.Labels[importedLabelKey] == "true" {
		return nil
	}
	also := ""
	if holder != "" {
		also = " (Endpoint " + holder + " holds it)"
	}
	return fmt.Errorf("IPPool %s already marks %s allocated, but not for pod %s/%s that the peer gave it to%s: find its holder with `kubectl underpool who %s`", cur.Name, addr, ep.Namespace, ep.Name, also, addr)
}

// recordedHolder names the Endpoint that records addr from pool, "" when none does; the
// Endpoints are listed once, on the first address that needs it.
func (pl *planner) recordedHolder(pool string, addr netip.Addr) (string, error) {
	if pl.holders == nil {
		var eps v1.EndpointList
		if err := pl.c.List(pl.ctx, &eps); err != nil {
			return "", fmt.Errorf("listing Endpoints: %w", err)
		}
		pl.holders = map[string]string{}
		for i := range eps.Items {
			for _, itf := range eps.Items[i].Status.Interfaces {
				for _, ip := range itf.IPs {
					if pfx, err := netip.ParsePrefix(ip.Address); err == nil {
						pl.holders[ip.Pool+" "+pfx.Addr().String()] = eps.Items[i].Namespace + "/" + eps.Items[i].Name
					}
				}
			}
		}
	}
	return pl.holders[pool+" "+addr.String()], nil
}

// holderOf returns the planned Endpoint that holds addr from pool.
func (pl *planner) holderOf(addr netip.Addr, pool string) *v1.Endpoint {
	for _, ep := range pl.eps {
		for _, itf := range ep.Status.Interfaces {
			for _, ip := range itf.IPs {
				if pfx, err := netip.ParsePrefix(ip.Address); err == nil && ip.Pool == pool && pfx.Addr() == addr {
					return ep
				}
			}
		}
	}
	return nil
}

// listed names up to 8 addresses of set.
func listed(view *allocator.PoolView, set allocator.RunSet) string {
	const most = 8
	var out []string
	for _, r := range set.Runs() {
		for o := r.Lo; len(out) < most; o++ {
			out = append(out, view.Addr(o).String())
			if o == r.Hi {
				break
			}
		}
	}
	if len(out) == 0 {
		return ""
	}
	more := ""
	if set.Count() > uint64(len(out)) {
		more = fmt.Sprintf(" and %d more", set.Count()-uint64(len(out)))
	}
	return ": " + strings.Join(out, ", ") + more
}
