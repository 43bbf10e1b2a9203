package store

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"

	"go.uber.org/zap"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/core/allocator"
)

// Conflict backoff: full jitter over an exponential ceiling, so N nodes that collided on
// one pool spread their retries instead of colliding again in lock step.
const (
	backoffBase = 5 * time.Millisecond
	backoffCap  = time.Second
)

// commit applies a batch of operations to the pool and writes its allocation state
// (PoolAllocation) once, retrying on fresh state after a conflict. Each attempt reads (prepare), plans (the pure
// nextStatus) and writes (write); the release protocol's check of the window comes after
// the read, in prepare.
func (p *PoolCommitter) commit(ctx context.Context, name string, q *poolQueue, ops []*poolOp) {
	start := p.now()
	for _, op := range ops {
		p.metrics.QueueWait.Observe(start.Sub(op.queued).Seconds())
	}
	// a pending re-mark goes first in the batch: its addresses are marked in the same
	// write as (and so before) anything the batch hands out, or the batch fails whole
	remark := p.remarkOp(name, q)
	if remark != nil {
		ops = append([]*poolOp{remark}, ops...)
	}
	for attempt := 1; ; attempt++ {
		var in *planInput
		if in, ops = p.prepare(ctx, name, q, ops); in == nil {
			return
		}
		plan := nextStatus(&in.alloc.State, in.pool, in.allocated, ops, in.blocked, p.now())
		for i, op := range ops {
			if op.kind == opRemark && remark != nil {
				plan.results[i].lost = plan.results[0].lost // the re-mark this op waited for
			}
		}
		if !plan.changed && in.kept {
			// an answer that needs no write rests on the state being current, which a kept
			// one may not be (the sweeper or an operator wrote since): an ensure would
			// report held an address the API has free. Read it and plan again.
			q.alloc = nil
			continue
		}
		p.metrics.Quarantined.WithLabelValues(name).Set(float64(len(plan.next.Quarantined)))
		if !plan.changed {
			finish(ops, plan.results, nil)
			return
		}
		var retry bool
		if retry, ops = p.write(ctx, name, q, in.alloc, plan, ops, attempt, start); !retry {
			return
		}
	}
}

// planInput is what one attempt plans from: the pool as read, its allocation state, the
// parsed spec and allocated set, and the offsets kept out of allocation (reservations,
// overlaps).
type planInput struct {
	obj       *v1.IPPool
	alloc     *v1.PoolAllocation
	kept      bool // alloc is this process' own last write or read, not read now
	pool      *allocator.PoolView
	allocated allocator.RunSet
	blocked   allocator.RunSet
}

// prepare reads the pool and returns what to plan from, with the ops still to plan; nil
// when none is left (each op dropped here has had its answer).
func (p *PoolCommitter) prepare(ctx context.Context, name string, q *poolQueue, ops []*poolOp) (*planInput, []*poolOp) {
	obj, specCached, err := p.current(ctx, name, q)
	var alloc *v1.PoolAllocation
	var kept bool
	if err == nil {
		alloc, kept, err = p.state(ctx, obj, q)
	}
	if err != nil {
		finish(ops, make([]opResult, len(ops)), err)
		return nil, nil
	}
	// after the read, never before it: a free planned on state read after its window
	// closed could land after the sweeper freed the address (docs/design.md). A state
	// kept from this process' own write is as good as read then: a write planned on it
	// succeeds only if nobody wrote the state since.
	if ops = p.dropLateFrees(ops); len(ops) == 0 {
		return nil, nil
	}
	if ops = p.screen(ctx, name, obj, alloc, ops); len(ops) == 0 {
		return nil, nil
	}
	pool, err := p.parse(obj, q)
	if err != nil {
		p.metrics.Unusable.WithLabelValues(name, ReasonInvalidSpec).Inc()
		finish(ops, make([]opResult, len(ops)), &UnusableError{Pool: name, Reason: ReasonInvalidSpec, Err: err})
		return nil, nil
	}
	allocated, err := pool.ParseAllocated(alloc.State.Allocated) // offsets outside the pool: corrupt
	if err != nil && kept {
		// repaired since, perhaps: judge what the API holds now
		var readErr error
		if alloc, readErr = p.reread(ctx, obj, q); readErr != nil {
			finish(ops, make([]opResult, len(ops)), readErr)
			return nil, nil
		}
		kept = false
		allocated, err = pool.ParseAllocated(alloc.State.Allocated)
	}
	if err != nil {
		p.metrics.Unusable.WithLabelValues(name, ReasonCorruptStatus).Inc()
		finish(ops, make([]opResult, len(ops)), &UnusableError{Pool: name, Reason: ReasonCorruptStatus, Err: err})
		return nil, nil
	}
	var blocked allocator.RunSet
	if hasAllocation(ops) {
		if blocked, err = p.blocked(ctx, pool, specCached); err != nil {
			// fail closed: an allocation that cannot know what is off limits gets nothing
			refuseAllocationsWith(ops, fmt.Errorf("IPPool %s: %w", name, err))
			if ops = releasesOnly(ops); len(ops) == 0 {
				return nil, nil
			}
		}
	}
	return &planInput{obj: obj, alloc: alloc, kept: kept, pool: pool, allocated: allocated, blocked: blocked}, ops
}

// reread reads the pool's allocation state from the API, setting aside the kept one.
func (p *PoolCommitter) reread(ctx context.Context, obj *v1.IPPool, q *poolQueue) (*v1.PoolAllocation, error) {
	q.alloc = nil
	alloc, _, err := p.state(ctx, obj, q)
	return alloc, err
}

// write sends the planned state, guarded by the resourceVersion read (or made, when the
// pool had none: a state made meanwhile by another node makes the create fail alike). On
// a conflict within patience it backs off, forgets the state (the next attempt reads it)
// and asks for another attempt (retry) with the ops left; otherwise every op has its answer.
func (p *PoolCommitter) write(ctx context.Context, name string, q *poolQueue, alloc *v1.PoolAllocation, plan statusPlan,
	ops []*poolOp, attempt int, start time.Time) (retry bool, left []*poolOp) {
	next := alloc.DeepCopy()
	next.State = plan.next
	var err error
	if next.ResourceVersion == "" {
		if p.now().After(p.Window.SendBy(q.aliveAt)) {
			// too late to trust that the pool is alive: read it again
			err = apierrors.NewAlreadyExists(v1.GroupVersion.WithResource("poolallocations").GroupResource(), name)
		} else {
			err = p.writer.Create(ctx, next)
		}
	} else {
		// the resourceVersion guard makes a write that raced anyone else's retry
		err = p.writer.Update(ctx, next)
	}
	lost := apierrors.IsConflict(err) || apierrors.IsAlreadyExists(err)
	if apierrors.IsNotFound(err) && next.ResourceVersion != "" {
		// the state this process wrote is gone while the pool exists (deleted by hand):
		// never start it again empty
		q.alloc, q.lost, q.lostUID = nil, true, alloc.PoolUID
		err = fmt.Errorf("%w: PoolAllocation %s was deleted while IPPool %s exists: who holds its addresses is unknown, so nothing "+
			"is handed out from it; restore the PoolAllocation (kubectl apply a backup), or delete the pool once no pod uses it",
			ErrStateLost, name, name)
	}
	switch {
	case err == nil:
		q.alloc = next
		p.noteRoom(q, next)
		p.metrics.observeCommit(len(ops), attempt, p.since(start))
		finish(ops, plan.results, nil)
		return false, nil
	case lost && p.since(start) < p.patience():
		p.metrics.Conflicts.Inc()
		p.backoff(ctx, attempt)
		q.alloc = nil
		return true, ops
	case lost:
		// out of patience; a late free still says why it was not sent
		ops = p.dropLateFrees(ops)
	}
	p.log.Warn("pool allocation state write failed", zap.String("pool", name), zap.Int("attempt", attempt), zap.Error(err))
	finish(ops, make([]opResult, len(ops)), fmt.Errorf("writing PoolAllocation %s: %w", name, err))
	return false, nil
}

// dropLateFrees answers the frees whose commit window has closed with ErrWindowClosed and
// returns the rest of the batch.
func (p *PoolCommitter) dropLateFrees(ops []*poolOp) []*poolOp {
	now := p.now()
	kept := ops[:0:0]
	for _, op := range ops {
		if !op.sendBy.IsZero() && now.After(op.sendBy) {
			p.metrics.LateFrees.Inc()
			answer(op, opResult{err: fmt.Errorf("freeing %s: %w", op.addr, ErrWindowClosed)})
			continue
		}
		kept = append(kept, op)
	}
	return kept
}

// screen answers the ops this incarnation of the pool must not serve and returns the
// rest: frees of addresses handed out by an earlier pool of the same name (it was
// deleted and made again: freeing here could free a live pod's address); anything but a
// free once the controller has closed the pool's state (it is being deleted and its state
// is empty: a free has nothing to free there); and, while the pool is being deleted,
// being imported or lacks its protection finalizer, allocations.
func (p *PoolCommitter) screen(ctx context.Context, name string, obj *v1.IPPool, alloc *v1.PoolAllocation, ops []*poolOp) []*poolOp {
	kept := ops[:0:0]
	for _, op := range ops {
		if (op.kind == opRelease || op.kind == opQuarantine) && op.poolUID != "" && op.poolUID != string(obj.UID) {
			p.log.Info("not freeing an address of an earlier pool of the same name", zap.String("pool", name),
				zap.String("ip", op.addr.String()), zap.String("handedOutBy", op.poolUID), zap.String("now", string(obj.UID)))
			answer(op, opResult{})
			continue
		}
		if alloc.Closed {
			answer(op, closedAnswer(op, name))
			continue
		}
		kept = append(kept, op)
	}
	if !hasAllocation(kept) {
		return kept
	}
	switch {
	case obj.DeletionTimestamp != nil:
		// a pool being deleted only gives back; it waits for its last address to go
		refuseAllocationsWith(kept, ErrPoolDeleting)
	case obj.Annotations[v1.ImportingAnnotation] != "":
		refuseAllocationsWith(kept, fmt.Errorf("%w: IPPool %s carries %s: `kubectl underpool import` is still writing its "+
			"allocation state (re-run the import if it was interrupted)", ErrPoolImporting, name, v1.ImportingAnnotation))
	case !controllerutil.ContainsFinalizer(obj, v1.PoolProtection):
		// the frees go now; the allocations wait, off the queue, for the finalizer
		go p.requeueWhenProtected(ctx, name, obj.UID, allocationsOf(kept))
	default:
		return kept
	}
	return releasesOnly(kept)
}

// closedAnswer is the answer to an op on a closed state: a free or quarantine has nothing
// to act on (the state is empty), anything that would mark an address fails.
func closedAnswer(op *poolOp, name string) opResult {
	if op.kind == opRelease || op.kind == opQuarantine {
		return opResult{}
	}
	return opResult{err: fmt.Errorf("%w: IPPool %s's allocation state is closed, the pool goes in a moment", ErrPoolDeleting, name)}
}

// requeueWhenProtected waits a little for a pool made a moment ago to get its protection
// finalizer, reading the API, and queues the allocations again once it has; otherwise
// they fail with ErrPoolUnprotected.
func (p *PoolCommitter) requeueWhenProtected(ctx context.Context, name string, uid types.UID, ops []*poolOp) {
	deadline := p.now().Add(p.protectionPatience())
	for attempt := 1; p.now().Before(deadline); attempt++ {
		p.backoff(ctx, min(attempt, 6))
		fresh := &v1.IPPool{}
		if err := p.api.Get(ctx, client.ObjectKey{Name: name}, fresh); err != nil || fresh.UID != uid {
			break // gone, made again or unreadable: the next batch reads it afresh
		}
		if controllerutil.ContainsFinalizer(fresh, v1.PoolProtection) {
			p.enqueue(ctx, name, ops...)
			return
		}
	}
	if p.now().Before(deadline) {
		p.enqueue(ctx, name, ops...)
		return
	}
	refuseAllocationsWith(ops, fmt.Errorf("%w: IPPool %s has no %s finalizer, which the underpool controller adds to every pool; "+
		"is the controller running?", ErrPoolUnprotected, name, v1.PoolProtection))
}

func allocationsOf(ops []*poolOp) []*poolOp {
	var out []*poolOp
	for _, op := range ops {
		if op.kind == opAllocate || op.kind == opAllocateExact {
			out = append(out, op)
		}
	}
	return out
}

// backoff waits a random time below an exponential ceiling.
func (p *PoolCommitter) backoff(ctx context.Context, attempt int) {
	ceiling := backoffCap
	if attempt < 20 {
		ceiling = min(backoffCap, backoffBase<<attempt)
	}
	d := p.jitter(ceiling)
	if d <= 0 {
		return
	}
	select {
	case <-ctx.Done():
	case <-p.clock().After(d):
	}
}

func (p *PoolCommitter) patience() time.Duration {
	if p.Patience <= 0 {
		return DefaultCommitPatience
	}
	return p.Patience
}

func (p *PoolCommitter) protectionPatience() time.Duration {
	if p.ProtectionPatience <= 0 {
		return DefaultProtectionPatience
	}
	return p.ProtectionPatience
}

func (p *PoolCommitter) jitter(d time.Duration) time.Duration {
	if p.Jitter != nil {
		return p.Jitter(d)
	}
	return rand.N(d)
}

func (p *PoolCommitter) clock() clock.Clock {
	if p.Clock == nil {
		return clock.RealClock{}
	}
	return p.Clock
}

func (p *PoolCommitter) now() time.Time { return p.clock().Now() }

func (p *PoolCommitter) since(t time.Time) time.Duration { return p.clock().Since(t) }
