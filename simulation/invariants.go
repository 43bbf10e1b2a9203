package simulation

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/core/allocator"
	"github.com/underpool/underpool/core/recycle"
)

// state is the API as the checker reads it, bypassing every gate.
type state struct {
	eps   []v1.Endpoint
	pools map[string]*poolState
	pods  map[string]*corev1.Pod // by name
	// allocs are every PoolAllocation, an earlier incarnation's leftovers included
	allocs []v1.PoolAllocation
}

type poolState struct {
	obj *v1.IPPool
	// state is the pool's allocation state, from its PoolAllocation (v1.StateOf: empty
	// when there is none, or only an earlier incarnation's)
	state     v1.AllocationState
	view      *allocator.PoolView
	allocated allocator.RunSet
}

func (s *sim) read() (*state, error) {
	c := s.contents()
	st := &state{pools: map[string]*poolState{}, pods: map[string]*corev1.Pod{}, eps: c.eps}
	for i := range c.pools {
		p := &c.pools[i]
		view, err := allocator.NewPool(p.Name, &p.Spec)
		if err != nil {
			return nil, fmt.Errorf("pool %s: %w", p.Name, err)
		}
		state := c.stateOf(p)
		allocated, err := allocator.ParseRunSet(state.Allocated)
		if err != nil {
			return nil, fmt.Errorf("pool %s state.allocated %q: %w", p.Name, state.Allocated, err)
		}
		st.pools[p.Name] = &poolState{obj: p, state: state, view: view, allocated: allocated}
	}
	st.allocs = c.allocs
	for i := range c.pods {
		st.pods[c.pods[i].Name] = &c.pods[i]
	}
	return st, nil
}

// holding is one record's claim on an address.
type holding struct {
	ep  *v1.Endpoint
	itf *v1.EndpointInterface
	ip  v1.EndpointIP
}

func (h holding) String() string {
	return fmt.Sprintf("Endpoint %s/%s record %s (pod %s)", h.ep.Namespace, h.ep.Name, h.itf.ContainerID, h.itf.PodUID)
}

func (st *state) holdings() []holding {
	var out []holding
	for i := range st.eps {
		ep := &st.eps[i]
		for j := range ep.Status.Interfaces {
			itf := &ep.Status.Interfaces[j]
			for _, ip := range itf.IPs {
				out = append(out, holding{ep: ep, itf: itf, ip: ip})
			}
		}
	}
	return out
}

// check is the invariants every step must keep:
//   - one address, one holder: no address is held by two Endpoint records (invariant 1);
//   - every address a record holds is allocated in its pool, the very incarnation that
//     handed it out: else it could be handed out again;
//   - nothing is freed that a live pod holds: the address a running sandbox of a pod
//     that still exists got from its ADD is held by a record of that pod (invariant 8);
//   - nothing is written to a closed state: the controller closes an empty state just
//     before it lets the pool go, so an address in a closed state is one the pool's
//     deletion never waited for.
func (s *sim) check() error {
	st, err := s.read()
	if err != nil {
		return fmt.Errorf("harness: reading the API: %w", err)
	}
	s.noteFreeable(st)
	for _, a := range st.allocs {
		if a.Closed && (a.State.Allocated != "" || a.State.Reclaiming != "") {
			return fmt.Errorf("invariant 1: PoolAllocation %s of %s is closed but holds allocated %q, reclaiming %q: written after its pool was let go",
				a.Name, a.PoolUID, a.State.Allocated, a.State.Reclaiming)
		}
	}
	holder := map[string]holding{}
	for _, h := range st.holdings() {
		prefix, err := netip.ParsePrefix(h.ip.Address)
		if err != nil {
			return fmt.Errorf("invariant 4: %s holds an unparsable address %q", h, h.ip.Address)
		}
		addr := prefix.Addr().String()
		if prev, dup := holder[addr]; dup {
			return fmt.Errorf("invariant 1: %s is held twice: by %s and by %s", addr, prev, h)
		}
		holder[addr] = h
		p := st.pools[h.ip.Pool]
		switch {
		case p == nil:
			return fmt.Errorf("invariant 1: %s holds %s of pool %s, which is gone: the address is free to be handed out again", h, addr, h.ip.Pool)
		case h.ip.PoolUID != "" && h.ip.PoolUID != string(p.obj.UID):
			return fmt.Errorf("invariant 1: %s holds %s of pool %s incarnation %s, but the pool is now %s", h, addr, h.ip.Pool, h.ip.PoolUID, p.obj.UID)
		}
		if o, ok := p.view.Offset(prefix.Addr()); !ok || !p.allocated.Contains(o) {
			return fmt.Errorf("invariant 1: %s holds %s, but pool %s has it free (allocated %q): it can be handed out twice",
				h, addr, h.ip.Pool, p.state.Allocated)
		}
	}
	for _, p := range s.world.pods {
		sb := p.latest()
		obj := st.pods[p.name]
		if !p.exists || sb == nil || !sb.running || obj == nil || string(obj.UID) != p.uid {
			continue
		}
		addr := netip.MustParsePrefix(sb.addr).Addr().String()
		h, ok := holder[addr]
		if !ok || h.ep.Name != p.name {
			return fmt.Errorf("invariant 8: pod %s (%s) runs sandbox %s with %s, but no record of the pod holds it any more (held by: %v)",
				p.name, p.uid, sb.id, sb.addr, holderName(h, ok))
		}
	}
	return nil
}

func holderName(h holding, ok bool) string {
	if !ok {
		return "nobody"
	}
	return h.String()
}

// checkConverged is what must hold once the run has settled, every window has passed and
// every loop has run on a fault-free API: each pool's allocated addresses are exactly
// those its Endpoints hold (nothing leaked), no record is left that recycling would
// judge gone, and no deleted pool is kept by its finalizer once empty.
func (s *sim) checkConverged() error {
	if err := s.check(); err != nil {
		return err
	}
	st, err := s.read()
	if err != nil {
		return fmt.Errorf("harness: reading the API: %w", err)
	}
	held := map[string]map[uint64]bool{}
	for _, h := range st.holdings() {
		p := st.pools[h.ip.Pool]
		if o, ok := p.view.Offset(netip.MustParsePrefix(h.ip.Address).Addr()); ok {
			if held[p.obj.Name] == nil {
				held[p.obj.Name] = map[uint64]bool{}
			}
			held[p.obj.Name][o] = true
		}
	}
	var problems []string
	names := make([]string, 0, len(st.pools))
	for name := range st.pools {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		p := st.pools[name]
		var leaked []string
		for _, run := range p.allocated.Runs() {
			for o := run.Lo; ; o++ {
				if !held[name][o] {
					leaked = append(leaked, p.view.Addr(o).String())
				}
				if o == run.Hi {
					break
				}
			}
		}
		if len(leaked) > 0 {
			problems = append(problems, fmt.Sprintf("pool %s: %v allocated but held by no Endpoint (leaked)", name, leaked))
		}
		if p.obj.DeletionTimestamp != nil && p.allocated.Count() == 0 {
			problems = append(problems, fmt.Sprintf("pool %s: deleted and empty, still kept by its finalizer", name))
		}
		if p.state.Reclaiming != "" {
			problems = append(problems, fmt.Sprintf("pool %s: marks left in its PoolAllocation's state.reclaiming %q", name, p.state.Reclaiming))
		}
	}
	for _, h := range st.holdings() {
		reason, err := recycle.Judge(h.ep, h.itf, st.pods[h.ep.Name], func() (bool, error) {
			n, err := recycle.OrdinalOf(h.ep.Name, h.ep.Status.OwnerName)
			return err == nil && h.ep.Status.OwnerName == stsName && s.world.ordinalWanted(h.ep.Name) && n >= 0, nil
		})
		if err == nil && reason != "" {
			problems = append(problems, fmt.Sprintf("%s holding %s was never recycled (%s)", h, h.ip.Address, reason))
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("invariant 2 (nothing leaks) after settling: %s", strings.Join(problems, "; "))
	}
	return nil
}
