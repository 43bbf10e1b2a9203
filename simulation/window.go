package simulation

import (
	"context"
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/core/allocator"
)

// The release protocol's time bound, checked as it is stated (docs/design.md, "The one
// time bound"): a record-remover free (a DEL, GC, recycling, quarantine, the rollback of
// a failed ADD) takes effect within the commit window W of its evidence, or never. Its
// evidence is taken before the write it follows: the Endpoint write that removed the
// record, or the pool commit that allocated the address (a rollback). So an address
// cleared from a state by anyone but the sweeper must have lost its last record, or been
// allocated, at most W before. A late free does harm only when the address was freed and
// handed out again meanwhile, which a run meets rarely; its lateness it shows every time.

// freeable notes, after every step, when each address last lost its last record or was
// allocated: until then plus W, a free of it may land.
type freeable struct {
	until map[string]time.Time // by poolUID/address
	held  map[string]bool
	alloc map[string]bool
	at    int // s.writes when last noted
}

// note compares the API now with what it held at the last step.
func (s *sim) noteFreeable(st *state) {
	f := &s.freeable
	if f.until != nil && f.at == s.writes {
		return
	}
	if f.until == nil {
		f.until = map[string]time.Time{}
	}
	f.at = s.writes
	until := s.clock.Now().Add(time.Duration(s.window))
	held := map[string]bool{}
	for _, h := range st.holdings() {
		uid := h.ip.PoolUID
		if p := st.pools[h.ip.Pool]; uid == "" && p != nil {
			uid = string(p.obj.UID)
		}
		if prefix, err := netip.ParsePrefix(h.ip.Address); err == nil {
			held[uid+"/"+prefix.Addr().String()] = true
		}
	}
	for k := range f.held {
		if !held[k] {
			f.until[k] = until
		}
	}
	alloc := map[string]bool{}
	for _, p := range st.pools {
		for _, addr := range addrsOf(p.view, p.allocated) {
			k := string(p.obj.UID) + "/" + addr
			alloc[k] = true
			if !f.alloc[k] {
				f.until[k] = until
			}
		}
	}
	f.held, f.alloc = held, alloc
}

// lateFrees is called as a PoolAllocation update by actor a lands: every address it
// clears must be freeable now, but for the sweeper's (the controller clearing a marked
// address: its three phases, not the window, make that safe).
func (s *sim) lateFrees(a *actor, next *v1.PoolAllocation) error {
	prev := &v1.PoolAllocation{}
	if err := s.api.Get(context.Background(), client.ObjectKeyFromObject(next), prev); err != nil || prev.PoolUID != next.PoolUID {
		return nil
	}
	pool := &v1.IPPool{}
	if err := s.api.Get(context.Background(), client.ObjectKey{Name: next.Name}, pool); err != nil {
		return nil
	}
	view, err := allocator.NewPool(pool.Name, &pool.Spec)
	if err != nil {
		return nil
	}
	before, err1 := view.ParseAllocated(prev.State.Allocated)
	after, err2 := view.ParseAllocated(next.State.Allocated)
	marked, err3 := view.ParseAllocated(prev.State.Reclaiming)
	if err1 != nil || err2 != nil || err3 != nil {
		return nil
	}
	now := s.clock.Now()
	var late []string
	for _, run := range before.Runs() {
		for o := run.Lo; ; o++ {
			k := string(next.PoolUID) + "/" + view.Addr(o).String()
			sweeper := a.node == "" && marked.Contains(o)
			if !after.Contains(o) && !sweeper && now.After(s.freeable.until[k]) {
				late = append(late, fmt.Sprintf("%s (freeable until %s)", view.Addr(o), s.since(s.freeable.until[k])))
			}
			if o == run.Hi {
				break
			}
		}
	}
	if len(late) == 0 {
		return nil
	}
	sort.Strings(late)
	return fmt.Errorf("release protocol: %s frees %s in pool %s at %s, more than the commit window %v after it lost its last record or was allocated: a late free",
		a.name, strings.Join(late, ", "), next.Name, s.since(now), time.Duration(s.window))
}

// since is a time as the trace shows it, from the start of the run.
func (s *sim) since(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return t.Sub(epoch).String()
}

func addrsOf(view *allocator.PoolView, set allocator.RunSet) []string {
	var out []string
	for _, run := range set.Runs() {
		for o := run.Lo; ; o++ {
			out = append(out, view.Addr(o).String())
			if o == run.Hi {
				break
			}
		}
	}
	return out
}
