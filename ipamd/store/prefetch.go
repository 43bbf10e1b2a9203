package store

import (
	"context"
	"errors"
	"time"

	"go.uber.org/zap"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/core/allocator"
)

// One write on an ADD's path: a prefetched address per pool.
//
// An ADD makes two writes one after the other: the pool commit that allocates, then the
// Endpoint write that records the holder. While a node keeps allocating from a pool, the
// committer makes the next ADD's pool commit ahead of it, after answering the last one,
// and keeps the address in the pool's slot; the next ADD takes it and makes only the
// Endpoint write.
//
// The release protocol needs nothing new for this. A prefetched address is what every
// allocation is between its two writes: allocated, held by no Endpoint. Its evidence is
// taken before its pool commit is sent, and the ADD that takes it sends its Endpoint write
// by the record deadline of that evidence (Window.SendBy), so the orphan sweeper's phases,
// a window apart, cover it as they cover any allocation. An address nobody takes is freed like a
// rolled-back allocation (no Endpoint write ever named it), or, past its window, left for
// the sweeper; a crash leaves it to the sweeper as well. Only this process knows of its
// slot, so two ipamds serving one node never share one.
//
// What it costs: while a node allocates, one address per pool stays allocated a moment
// longer than needed (at most PrefetchIdle past the last ADD); no slot is filled in a pool
// with few free addresses left (prefetchFloor), where another node's ADD may need it.

// DefaultPrefetchIdle is how long a prefetched address waits for an ADD before it is
// freed, and how recent the last ADD served from the pool must be for a slot to be filled
// at all (PoolCommitter.PrefetchIdle, --prefetch-idle).
const DefaultPrefetchIdle = time.Second

func (p *PoolCommitter) prefetchIdle() time.Duration {
	if p.PrefetchIdle <= 0 {
		return DefaultPrefetchIdle
	}
	return p.PrefetchIdle
}

// prefetchFloor is the fewest free addresses a pool must keep, besides the one taken,
// for a slot to be filled: a sixteenth of the pool, at least 16.
func prefetchFloor(total int64) int64 { return max(16, total/16) }

// prefetched is an address in a pool's slot, allocated by this process for an ADD that
// has not arrived yet.
type prefetched struct {
	grant    Grant
	evidence time.Time // before its pool commit was sent
	gen      int64     // the pool's spec generation it was allocated under
	since    time.Time // when it entered the slot
}

// takePrefetched hands out the pool's prefetched address when it is there, or being
// prefetched (its commit is already on the way: waiting for it is quicker than a commit of
// our own), and its record deadline leaves the ADD half of it (a quarter window); a stale
// one is freed. The grant carries the evidence the caller's Endpoint write must keep to.
func (p *PoolCommitter) takePrefetched(ctx context.Context, pool string) (Grant, bool) {
	p.mu.Lock()
	q := p.queues[pool]
	if q == nil {
		p.mu.Unlock()
		return Grant{}, false
	}
	if q.slot == nil && q.filling != nil {
		filling := q.filling
		p.mu.Unlock()
		select {
		case <-filling:
		case <-ctx.Done():
			return Grant{}, false
		}
		p.mu.Lock()
	}
	slot := q.slot
	q.slot = nil
	p.mu.Unlock()
	if slot == nil {
		return Grant{}, false
	}
	if p.stale(slot, p.now()) || !p.stillServes(ctx, pool, slot) {
		p.freePrefetched(ctx, pool, slot, "stale")
		return Grant{}, false
	}
	p.metrics.Prefetched.WithLabelValues(pool, "taken").Inc()
	g := slot.grant
	g.Evidence = slot.evidence
	return g, true
}

// AwaitPrefetches is for an allocation that found the pool exhausted or the requested
// address allocated: it waits until every prefetched address of the moment has been taken or
// freed, and reports whether trying again once may succeed (false: no prefetch here, or
// ctx ended). An address prefetched on another node is taken by that node's next ADD or
// freed within PrefetchIdle and half of it (the expiry's period), and none is made while
// the pool is below its floor. So a pool filled to its last address never fails an ADD
// because another node holds one ready (1000 pods into a pool of 1000 from 10 nodes: none
// fails), and an exhausted pool's refusal comes that much later.
func (p *PoolCommitter) AwaitPrefetches(ctx context.Context, err error) bool {
	if !p.Prefetch || !errors.Is(err, allocator.ErrExhausted) && !errors.Is(err, allocator.ErrAllocated) {
		return false
	}
	select {
	case <-ctx.Done():
		return false
	case <-p.clock().After(p.prefetchIdle() * 3 / 2):
		return true
	}
}

// stale reports whether the slot's address is past the last moment an ADD may take it: a
// quarter window after its evidence, which leaves the ADD a quarter to send its Endpoint
// write by the record deadline (Window.SendBy).
func (p *PoolCommitter) stale(slot *prefetched, now time.Time) bool {
	return now.After(slot.evidence.Add(p.Window.WriteTimeout()))
}

// stillServes reports whether the pool, as the cache has it now, is the incarnation and
// spec generation the address came from and is not being deleted: a spec changed since
// gets a fresh allocation instead, as a pool being deleted gets none.
func (p *PoolCommitter) stillServes(ctx context.Context, pool string, slot *prefetched) bool {
	obj := &v1.IPPool{}
	if err := p.cache.Get(ctx, client.ObjectKey{Name: pool}, obj); err != nil {
		return false
	}
	return string(obj.UID) == slot.grant.PoolUID && obj.Generation == slot.gen && obj.DeletionTimestamp == nil
}

// Served notes an ADD that got, and recorded, an address of the pool and, when the node
// keeps serving ADDs from it and it has room, queues the commit that fills its empty
// slot. The commit's answer fills the slot in the pool's worker (settle), so nothing
// waits for it. Only a recorded ADD counts: a node whose ADDs keep failing (a namespace
// being deleted refuses their Endpoints) prefetches nothing.
func (p *PoolCommitter) Served(ctx context.Context, pool string) {
	now := p.now()
	p.mu.Lock()
	q := p.queueLocked(pool)
	busy := !q.lastAlloc.IsZero() && now.Sub(q.lastAlloc) < p.prefetchIdle()
	q.lastAlloc = now
	fill := busy && p.Prefetch && q.slot == nil && q.filling == nil && q.room.written &&
		q.room.free > prefetchFloor(q.room.total)
	if fill {
		q.filling = make(chan struct{})
	}
	p.mu.Unlock()
	if !fill {
		return
	}
	evidence := now // taken before the commit is sent
	op := &poolOp{kind: opAllocate, done: make(chan opResult, 1), queued: now}
	op.settle = func(r opResult) { p.prefetched(pool, r, evidence) }
	p.enqueue(context.WithoutCancel(ctx), pool, op)
}

// prefetched puts the answer of a prefetch's commit in the pool's slot. It runs in the
// pool's worker, before any later op of the batch is answered.
func (p *PoolCommitter) prefetched(pool string, r opResult, evidence time.Time) {
	p.mu.Lock()
	q := p.queueLocked(pool)
	close(q.filling)
	q.filling = nil
	if r.err == nil {
		q.slot = &prefetched{grant: grantOf(r), evidence: evidence, gen: q.room.gen, since: p.now()}
	}
	p.mu.Unlock()
	if r.err == nil {
		p.metrics.Prefetched.WithLabelValues(pool, "allocated").Inc()
	}
}

// ExpirePrefetched frees every prefetched address no ADD took within PrefetchIdle, or
// that no ADD may take any more (a quarter window past its evidence), while its free can
// still be sent. ipamd calls it every half PrefetchIdle (the simulation, as one of its
// actions).
func (p *PoolCommitter) ExpirePrefetched(ctx context.Context) {
	now := p.now()
	type expired struct {
		pool string
		slot *prefetched
	}
	var due []expired
	p.mu.Lock()
	for name, q := range p.queues {
		if q.slot != nil && (now.Sub(q.slot.since) >= p.prefetchIdle() || p.stale(q.slot, now)) {
			due = append(due, expired{name, q.slot})
			q.slot = nil
		}
	}
	p.mu.Unlock()
	for _, e := range due {
		p.freePrefetched(ctx, e.pool, e.slot, "not taken")
	}
}

// freePrefetched frees an address no Endpoint write ever named, as a rollback would,
// bounded by its evidence's window (past it, the sweeper frees it).
func (p *PoolCommitter) freePrefetched(ctx context.Context, pool string, slot *prefetched, why string) {
	f := Free{Pool: pool, PoolUID: slot.grant.PoolUID, Addr: slot.grant.Addr.Addr(), Evidence: slot.evidence}
	if err := p.Release(ctx, f); err != nil {
		p.log.Info("prefetched address not freed; left for the orphan sweeper", zap.String("pool", pool),
			zap.Stringer("ip", slot.grant.Addr), zap.String("why", why), zap.Error(err))
		return
	}
	p.metrics.Prefetched.WithLabelValues(pool, "freed").Inc()
}

// noteRoom records, for the prefetch, what the pool's write just made of it. Called by
// the pool's worker, the only writer of q.alloc and q.parsed*.
func (p *PoolCommitter) noteRoom(q *poolQueue, written *v1.PoolAllocation) {
	r := room{written: true, gen: q.parsedGen, free: written.State.FreeIPCount, total: written.State.TotalIPCount}
	p.mu.Lock()
	q.room = r
	p.mu.Unlock()
}
