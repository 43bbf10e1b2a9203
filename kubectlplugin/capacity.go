package kubectlplugin

import (
	"context"
	"fmt"
	"net/netip"
	"sort"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/core/allocator"
	"github.com/underpool/underpool/core/apppool"
)

// Capacity is one pool's address accounting as ipamd's allocator sees it now: what it may
// hand out (total), what is taken, what is kept out of allocation and why, and what is left.
// Free is what an allocation could get: the usable addresses minus the allocated, the
// quarantined, the reserved (ReservedIP objects) and those another pool also covers (handed
// out by neither; ipamd/store/overlap.go). That last rule is copied here read-only
// (sharedWith) because ipamd keeps it unexported.
type Capacity struct {
	Name        string      `json:"name"`
	Subnet      string      `json:"subnet"`
	Family      v1.IPFamily `json:"family,omitempty"`
	Total       uint64      `json:"total"`
	Allocated   uint64      `json:"allocated"`
	Quarantined uint64      `json:"quarantined"`
	Reserved    uint64      `json:"reserved"`
	Shared      uint64      `json:"shared"`
	Free        uint64      `json:"free"`
	UsedPercent float64     `json:"usedPercent"`
	Default     bool        `json:"default"`
	Deleting    bool        `json:"deleting,omitempty"`
	// AppPoolOwner is the workload an application pool was carved for ("kind/ns/name").
	AppPoolOwner string `json:"appPoolOwner,omitempty"`
	// Problem says why ipamd cannot use the pool at all (its spec or its PoolAllocation's
	// state does not parse).
	Problem string `json:"problem,omitempty"`

	pool      *v1.IPPool
	view      *allocator.PoolView
	allocated allocator.RunSet
	free      allocator.RunSet
}

// clusterPools is every pool with its capacity, read once per command.
type clusterPools struct {
	list   []v1.IPPool
	byName map[string]*Capacity
	order  []*Capacity
}

// poolStates is every pool's allocation state by pool name, as v1.StateOf reads it: a pool
// without a PoolAllocation, or whose PoolAllocation names an earlier incarnation of the
// pool, has nothing allocated (ipamd starts it afresh, never serves the old one).
type poolStates map[string]v1.AllocationState

func loadPools(ctx context.Context, c client.Reader, now time.Time) (*clusterPools, error) {
	var pools v1.IPPoolList
	if err := c.List(ctx, &pools); err != nil {
		return nil, fmt.Errorf("listing IPPools: %w: is underpool installed (kubectl get crd ippools.underpool.io)?", err)
	}
	states, err := loadStates(ctx, c, pools.Items)
	if err != nil {
		return nil, err
	}
	var reserved v1.ReservedIPList
	if err := c.List(ctx, &reserved); err != nil {
		return nil, fmt.Errorf("listing ReservedIPs: %w", err)
	}
	sort.Slice(pools.Items, func(i, j int) bool { return pools.Items[i].Name < pools.Items[j].Name })
	cp := &clusterPools{list: pools.Items, byName: map[string]*Capacity{}}
	for i := range pools.Items {
		capa := capacityOf(&pools.Items[i], pools.Items, states, reserved.Items, now)
		cp.byName[capa.Name] = capa
		cp.order = append(cp.order, capa)
	}
	return cp, nil
}

// loadStates lists the PoolAllocations once (one request, not one per pool) and keeps
// each pool's state.
func loadStates(ctx context.Context, c client.Reader, pools []v1.IPPool) (poolStates, error) {
	var allocs v1.PoolAllocationList
	if err := c.List(ctx, &allocs); err != nil {
		return nil, fmt.Errorf("listing PoolAllocations: %w: is the poolallocations.underpool.io CRD installed, and may you list it?", err)
	}
	return v1.StatesOf(pools, allocs.Items), nil
}

func capacityOf(p *v1.IPPool, all []v1.IPPool, states poolStates, reserved []v1.ReservedIP, now time.Time) *Capacity {
	c := &Capacity{Name: p.Name, Subnet: p.Spec.Subnet, Default: p.Spec.Default, Deleting: p.DeletionTimestamp != nil, pool: p}
	c.AppPoolOwner = p.Annotations[apppool.AnnotationOwner]
	if c.AppPoolOwner == "" && p.Labels[apppool.LabelOwnerHash] != "" {
		c.AppPoolOwner = "hash " + p.Labels[apppool.LabelOwnerHash]
	}
	view, err := allocator.NewPool(p.Name, &p.Spec)
	if err != nil {
		c.Problem = "spec does not parse: " + err.Error() + ": fix the IPPool's spec"
		return c
	}
	c.view, c.Family = view, view.Family()
	c.Total = view.Usable.Count()
	state := states[p.Name]
	allocated, err := view.ParseAllocated(state.Allocated) // offsets past the subnet: corrupt, not counted
	if err != nil {
		c.Problem = fmt.Sprintf("PoolAllocation %s state.allocated %q does not parse: %v: ipamd refuses the pool until its state is repaired", p.Name, state.Allocated, err)
		return c
	}
	c.allocated = allocated
	c.Allocated = allocated.Count()
	left := view.Usable.Subtract(allocated)
	var quarantined allocator.RunSet
	for _, q := range state.Quarantined {
		if a, err := netip.ParseAddr(q.IP); err == nil && q.Until.After(now) {
			if o, ok := view.Offset(a); ok {
				quarantined.Add(o)
			}
		}
	}
	var held allocator.RunSet
	for _, r := range reserved {
		// a bad entry reserves what it clearly names, as ipamd reads it (store.ReservedIPs)
		set, _ := allocator.ClipReservations(view.Prefix, r.Spec.IPs)
		for _, run := range set.Runs() {
			held.AddRun(run)
		}
	}
	c.Quarantined, left = minus(left, quarantined)
	c.Reserved, left = minus(left, held)
	c.Shared, left = minus(left, sharedWith(view, all, states))
	c.free = left
	c.Free = left.Count()
	if c.Total > 0 {
		c.UsedPercent = float64(int(float64(c.Allocated)/float64(c.Total)*1000+0.5)) / 10
	}
	return c
}

// minus returns how many of s's offsets o removes, and s without them.
func minus(s, o allocator.RunSet) (uint64, allocator.RunSet) {
	rest := s.Subtract(o)
	return s.Count() - rest.Count(), rest
}

// sharedWith is every offset of view that another existing pool could hand out or holds:
// ipamd hands out such an address from neither pool (a read-only copy of the rule in
// ipamd/store/overlap.go, which is unexported).
func sharedWith(view *allocator.PoolView, all []v1.IPPool, states poolStates) allocator.RunSet {
	var out allocator.RunSet
	for i := range all {
		o := &all[i]
		if o.Name == view.Name {
			continue
		}
		fp, ok := allocator.FootprintOf(o.Name, &o.Spec)
		if !ok || !fp.Prefix.Overlaps(view.Prefix) {
			continue
		}
		if allocated := states[o.Name].Allocated; !fp.All && allocated != "" {
			// a corrupt state (offsets past its subnet included) covers the whole subnet
			if held, err := allocator.ParseAllocated(fp.Prefix, allocated); err != nil {
				fp = allocator.Footprint{Prefix: fp.Prefix, All: true}
			} else {
				fp.Set = fp.Set.Clone()
				for _, r := range held.Runs() {
					fp.Set.AddRun(r)
				}
			}
		}
		for _, r := range fp.In(view.Prefix).Runs() {
			out.AddRun(r)
		}
	}
	return out
}

// holds reports whether the pool's allocation state marks addr allocated.
func (c *Capacity) holds(addr netip.Addr) bool {
	if c.view == nil {
		return false
	}
	o, ok := c.view.Offset(addr)
	return ok && c.allocated.Contains(o)
}

// covers reports whether addr lies in the pool's subnet.
func (c *Capacity) covers(addr netip.Addr) bool {
	return c.view != nil && c.view.Prefix.Contains(addr)
}
