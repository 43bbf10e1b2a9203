package orphans

import (
	"context"
	"fmt"
	"net/netip"

	"go.uber.org/zap"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/core/allocator"
)

// step does a pool's due work on a fresh read of it and its PoolAllocation, checking each
// item again against the fresh state and the uncached Endpoints, in one write of the
// PoolAllocation guarded by the read's resourceVersion: a conflict or a changed pool
// writes nothing this round. It returns how many addresses it freed.
func (s *Sweeper) step(ctx context.Context, ref poolRef, w *poolWork, heldNow map[heldKey]bool) (int, error) {
	pool := &v1.IPPool{}
	if err := s.API.Get(ctx, client.ObjectKey{Name: ref.name}, pool); err != nil {
		if apierrors.IsNotFound(err) {
			return 0, nil
		}
		return 0, fmt.Errorf("reading IPPool %s: %w", ref.name, err)
	}
	if pool.UID != ref.uid {
		return 0, nil // made again under the same name: not the allocations we watched
	}
	alloc := &v1.PoolAllocation{}
	if err := s.API.Get(ctx, client.ObjectKey{Name: ref.name}, alloc); err != nil {
		if apierrors.IsNotFound(err) {
			return 0, nil // no state: nothing allocated
		}
		return 0, fmt.Errorf("reading PoolAllocation %s: %w", ref.name, err)
	}
	if alloc.PoolUID != pool.UID || alloc.Closed {
		return 0, nil // an earlier pool's state, or a closed one (empty; nothing is written to it)
	}
	view, err := allocator.NewPool(pool.Name, &pool.Spec)
	if err != nil {
		return 0, nil
	}
	allocated, err := view.ParseAllocated(alloc.State.Allocated)
	if err != nil {
		return 0, nil
	}
	marked, _ := allocator.ParseRunSet(alloc.State.Reclaiming)
	p := &stepPlan{view: view, allocated: allocated, marked: marked, heldNow: heldNow}
	p.unmarkHeld(append(append(append([]netip.Addr(nil), w.unmark...), w.confirm...), w.free...))
	p.markUnheld(w.mark)
	confirmed := p.confirmable(w.confirm)
	freeing := p.freeConfirmed(w.free)
	s.recordConfirmations(ref, confirmed)
	s.forgetUnmarked(ref, p.marked, view)
	if !p.changed {
		return 0, nil
	}
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("sweep stopped (%w) before writing pool %s", err, ref.name)
	}
	alloc.State.Allocated = p.allocated.String()
	alloc.State.Reclaiming = p.marked.String()
	alloc.State.SetCounts(view.TotalCount(), int64(p.allocated.Count()))
	if err := s.Writer.Update(ctx, alloc); err != nil { // guarded by the resourceVersion read
		if apierrors.IsNotFound(err) {
			s.Log.Info("pool state deleted while reclaiming orphans; the next sweep looks again", zap.String("pool", ref.name))
			return 0, nil
		}
		if apierrors.IsConflict(err) {
			s.Log.Info("pool changed while reclaiming orphans; the next sweep looks again", zap.String("pool", ref.name))
			return 0, nil
		}
		return 0, fmt.Errorf("reclaiming orphans of pool %s: %w", ref.name, err)
	}
	s.recordMarks(ref, p.newlyMarked)
	for _, addr := range p.newlyMarked {
		s.Log.Info("marked an address no Endpoint holds; freed after two more sweeps a commit window apart if still unheld",
			zap.String("pool", ref.name), zap.String("ip", addr.String()))
	}
	for _, addr := range freeing {
		s.Log.Warn("freed an orphan address no Endpoint held", zap.String("pool", ref.name), zap.String("ip", addr.String()))
		if s.Freed != nil {
			s.Freed.Inc()
		}
	}
	return len(freeing), nil
}

// stepPlan is one pool's fresh state while a step decides on it.
type stepPlan struct {
	view              *allocator.PoolView
	allocated, marked allocator.RunSet
	heldNow           map[heldKey]bool
	newlyMarked       []netip.Addr
	changed           bool
}

func (p *stepPlan) offset(addr netip.Addr) (uint64, bool) { return p.view.Offset(addr) }

func (p *stepPlan) held(addr netip.Addr) bool { return p.heldNow[heldKey{p.view.Name, addr}] }

// unmarkHeld drops the marks of the addresses the API shows held: an Endpoint holds them,
// they are no orphans (a mark only ever lets the sweeper free, so dropping one is safe).
func (p *stepPlan) unmarkHeld(addrs []netip.Addr) {
	for _, addr := range addrs {
		if o, ok := p.offset(addr); ok && p.held(addr) && p.marked.Remove(o) {
			p.changed = true
		}
	}
}

func (p *stepPlan) markUnheld(addrs []netip.Addr) {
	for _, addr := range addrs {
		if o, ok := p.offset(addr); ok && p.allocated.Contains(o) && !p.held(addr) && p.marked.Add(o) {
			p.newlyMarked = append(p.newlyMarked, addr)
			p.changed = true
		}
	}
}

// confirmable returns the marks still there and unheld in the API: confirmed now.
func (p *stepPlan) confirmable(addrs []netip.Addr) []netip.Addr {
	var out []netip.Addr
	for _, addr := range addrs {
		if o, ok := p.offset(addr); ok && p.marked.Contains(o) && !p.held(addr) {
			out = append(out, addr)
		}
	}
	return out
}

// freeConfirmed frees the confirmed marks that are still there and unheld: the mark
// proves the allocation is the one confirmed a window ago.
func (p *stepPlan) freeConfirmed(addrs []netip.Addr) []netip.Addr {
	var out []netip.Addr
	for _, addr := range addrs {
		if o, ok := p.offset(addr); ok && p.marked.Contains(o) && p.allocated.Contains(o) && !p.held(addr) {
			p.marked.Remove(o)
			p.allocated.Remove(o)
			out = append(out, addr)
			p.changed = true
		}
	}
	return out
}

// recordConfirmations starts the free phase's clock for marks confirmed this sweep; it
// counts from the next sweep, which starts after the uncached read that confirmed them.
func (s *Sweeper) recordConfirmations(ref poolRef, addrs []netip.Addr) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, addr := range addrs {
		if m := s.marks[ref.uid][addr]; m != nil {
			m.confirmPending = true
		}
		if s.Found != nil {
			s.Found.Inc()
		}
	}
}

// forgetUnmarked drops the memory of marks the fresh read does not show (a release
// dropped them, or this sweep freed them): a mark made again later starts afresh.
func (s *Sweeper) forgetUnmarked(ref poolRef, marked allocator.RunSet, view *allocator.PoolView) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for addr := range s.marks[ref.uid] {
		if o, ok := view.Offset(addr); !ok || !marked.Contains(o) {
			delete(s.marks[ref.uid], addr)
		}
	}
}

// recordMarks remembers marks this sweep wrote; they count from the next sweep.
func (s *Sweeper) recordMarks(ref poolRef, addrs []netip.Addr) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.marks[ref.uid] == nil {
		s.marks[ref.uid] = map[netip.Addr]*markClock{}
	}
	for _, addr := range addrs {
		s.marks[ref.uid][addr] = &markClock{seenPending: true}
		delete(s.since[ref.uid], addr)
	}
}
