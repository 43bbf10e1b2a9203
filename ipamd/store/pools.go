// Package store commits allocation decisions to the API: pool status (the commit point
// that makes an address taken) and Endpoints (who holds it). Reads come from informer
// caches; every write is guarded by resourceVersion, and a conflict is retried on fresh
// state, so two ipamds can never both take one address.
package store

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"go.uber.org/zap"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/underpool/underpool/ipamd/allocator"
	v1 "github.com/underpool/underpool/ipamd/api/v1"
)

// ErrPoolNotFound means no IPPool of that name exists.
var ErrPoolNotFound = errors.New("pool not found")

// ErrPoolDeleting means the pool is being deleted and hands out nothing more.
var ErrPoolDeleting = errors.New("pool is being deleted")

// maxCommitAttempts bounds retries of one batch under sustained conflicts.
const maxCommitAttempts = 64

type opKind int

const (
	opAllocate opKind = iota
	opAllocateExact
	opRelease
	opEnsure
	opQuarantine
	opRemark // no change of its own: it waits for the pool's pending re-mark
)

type poolOp struct {
	kind  opKind
	addr  netip.Addr
	addrs []netip.Addr // ensure: many at once, so a restart re-marks a node in one write
	// quarantine: who answered for addr, and until when it stays out of allocation
	mac   string
	until time.Time
	done  chan opResult
	// settle, when set, runs with the op's result before it or any later op of its batch
	// is answered (a re-mark's bookkeeping: see remarkOp)
	settle func(opResult)
	// queued is when the op entered its pool's queue (QueueWait)
	queued time.Time
}

type opResult struct {
	addr    netip.Prefix
	pool    *allocator.PoolView
	changed bool
	lost    []netip.Addr // ensure: the addresses that had to be marked again
	err     error
}

// poolQueue serialises commits for one pool: requests that arrive while a commit is in
// flight are committed together in the next status update, so N concurrent allocations
// cost about one write each batch instead of N conflicting writes.
type poolQueue struct {
	pending []*poolOp
	running bool

	latest    *v1.IPPool // newest object this process wrote or read from the API
	parsedUID string
	parsedGen int64
	parsed    *allocator.PoolView

	// remark are addresses this node's Endpoints hold that the pool could not be shown
	// yet (its spec did not parse, its status was corrupt, the write failed). Every commit
	// of the pool marks them first and nothing is handed out from it until that succeeds:
	// serving it before could hand out an address an Endpoint holds. Guarded by PoolCommitter.mu.
	remark []netip.Addr
	// gone is set when the last read found no such pool: the queue is dropped once idle.
	gone bool
}

// BlockedFunc returns offsets of a pool that must not be handed out (reserved
// addresses). An error fails the batch's allocations: not knowing what is reserved is no
// reason to hand it out.
type BlockedFunc func(context.Context, *allocator.PoolView) (allocator.RunSet, error)

// PoolCommitter commits allocation decisions to pool status: one queue per pool, one
// status write per batch, conflicts retried on fresh state. It alone writes pool status.
type PoolCommitter struct {
	writer  client.Client
	cache   client.Reader // informer-backed
	api     client.Reader // uncached, for fresh state after a conflict
	log     *zap.Logger
	metrics *Metrics
	// reserved may be nil; addresses other pools share are blocked besides, always (overlap.go).
	reserved BlockedFunc

	mu     sync.Mutex
	queues map[string]*poolQueue

	footprints footprintCache
}

// NewPoolCommitter returns a committer writing through writer, reading pools from the
// informer cache and, after a conflict or when the cache lags, from the uncached api
// reader. blocked (nil: none) names addresses to keep out of allocation; log and metrics
// may be nil.
func NewPoolCommitter(writer client.Client, cache, api client.Reader, blocked BlockedFunc, log *zap.Logger, metrics *Metrics) *PoolCommitter {
	if log == nil {
		log = zap.NewNop()
	}
	if metrics == nil {
		metrics = NewMetrics(nil)
	}
	return &PoolCommitter{writer: writer, cache: cache, api: api, reserved: blocked, log: log, metrics: metrics}
}

// Allocate takes the next free address of the pool.
func (p *PoolCommitter) Allocate(ctx context.Context, pool string) (netip.Prefix, *allocator.PoolView, error) {
	r := p.submit(ctx, pool, &poolOp{kind: opAllocate})
	p.metrics.countAllocation(pool, r.err)
	return r.addr, r.pool, r.err
}

// AllocateExact takes addr if the pool may hand it out and nobody holds it.
func (p *PoolCommitter) AllocateExact(ctx context.Context, pool string, addr netip.Addr) (netip.Prefix, *allocator.PoolView, error) {
	r := p.submit(ctx, pool, &poolOp{kind: opAllocateExact, addr: addr})
	p.metrics.countAllocation(pool, r.err)
	return r.addr, r.pool, r.err
}

// Release frees addr in the pool; freeing a free address succeeds.
func (p *PoolCommitter) Release(ctx context.Context, pool string, addr netip.Addr) error {
	r := p.submit(ctx, pool, &poolOp{kind: opRelease, addr: addr})
	if errors.Is(r.err, ErrPoolNotFound) {
		return nil // nothing to free in a pool that is gone
	}
	p.metrics.Releases.WithLabelValues(pool, resultOf(r.err)).Inc()
	return r.err
}

// Quarantine frees addr and keeps it out of allocation until the given time: another
// host answered for it on the wire.
func (p *PoolCommitter) Quarantine(ctx context.Context, pool string, addr netip.Addr, mac string, until time.Time) error {
	r := p.submit(ctx, pool, &poolOp{kind: opQuarantine, addr: addr, mac: mac, until: until})
	return r.err
}

// Ensure marks every addr allocated in one commit and returns those the pool had lost.
func (p *PoolCommitter) Ensure(ctx context.Context, pool string, addrs []netip.Addr) ([]netip.Addr, error) {
	r := p.submit(ctx, pool, &poolOp{kind: opEnsure, addrs: addrs})
	return r.lost, r.err
}

// Remark marks addrs allocated, like Ensure, and keeps them pending when that fails: until
// a later commit of the pool marks them, the pool hands nothing out (see poolQueue.remark).
// Every commit of the pool retries, and RetryRemarks does so for idle pools.
func (p *PoolCommitter) Remark(ctx context.Context, pool string, addrs []netip.Addr) ([]netip.Addr, error) {
	p.mu.Lock()
	q := p.queueLocked(pool)
	q.remark = append(q.remark, addrs...)
	p.mu.Unlock()
	r := p.submit(ctx, pool, &poolOp{kind: opRemark})
	return r.lost, r.err
}

// PendingRemarks names the pools with addresses still waiting to be re-marked.
func (p *PoolCommitter) PendingRemarks() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var names []string
	for name, q := range p.queues {
		if len(q.remark) > 0 {
			names = append(names, name)
		}
	}
	return names
}

// RetryRemarks commits every pool with pending re-marks and returns what still fails.
func (p *PoolCommitter) RetryRemarks(ctx context.Context) map[string]error {
	failed := map[string]error{}
	for _, name := range p.PendingRemarks() {
		if r := p.submit(ctx, name, &poolOp{kind: opRemark}); r.err != nil {
			failed[name] = r.err
		}
	}
	return failed
}

// View returns the parsed spec of a pool from the cache, for routes and gateways.
func (p *PoolCommitter) View(ctx context.Context, name string) (*allocator.PoolView, error) {
	var obj v1.IPPool
	if err := p.cache.Get(ctx, client.ObjectKey{Name: name}, &obj); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("%w: %s", ErrPoolNotFound, name)
		}
		return nil, err
	}
	return allocator.NewPool(obj.Name, &obj.Spec)
}

func (p *PoolCommitter) submit(ctx context.Context, pool string, op *poolOp) opResult {
	op.done = make(chan opResult, 1)
	op.queued = time.Now()
	p.mu.Lock()
	q := p.queueLocked(pool)
	q.pending = append(q.pending, op)
	if !q.running {
		q.running = true
		// the worker outlives the caller's context on purpose: a committed decision must
		// reach its waiter or be undone, never be abandoned half-way
		go p.drain(context.WithoutCancel(ctx), pool, q)
	}
	p.mu.Unlock()
	return <-op.done
}

func (p *PoolCommitter) queueLocked(pool string) *poolQueue {
	if p.queues == nil {
		p.queues = map[string]*poolQueue{}
	}
	q := p.queues[pool]
	if q == nil {
		q = &poolQueue{}
		p.queues[pool] = q
	}
	return q
}

func (p *PoolCommitter) drain(ctx context.Context, pool string, q *poolQueue) {
	for {
		p.mu.Lock()
		ops := q.pending
		q.pending = nil
		if len(ops) == 0 {
			q.running = false
			if q.gone && len(q.remark) == 0 {
				// a deleted pool's queue would otherwise stay for the daemon's life
				delete(p.queues, pool)
				p.metrics.forget(pool) // and its series: a committer nobody tells of deletes keeps none either
			}
			p.mu.Unlock()
			return
		}
		p.mu.Unlock()
		p.commit(ctx, pool, q, ops)
	}
}

// commit applies a batch of operations to the pool and writes its status once.
func (p *PoolCommitter) commit(ctx context.Context, name string, q *poolQueue, ops []*poolOp) {
	start := time.Now()
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
		obj, specCached, err := p.current(ctx, name, q)
		if err != nil {
			finish(ops, make([]opResult, len(ops)), err)
			return
		}
		if obj.DeletionTimestamp != nil && hasAllocation(ops) {
			// a pool being deleted only gives back; it waits for its last address to go
			refuseAllocations(ops)
			ops = releasesOnly(ops)
			if len(ops) == 0 {
				return
			}
		}
		pool, err := p.parse(obj, q)
		if err != nil {
			p.metrics.Unusable.WithLabelValues(name, ReasonInvalidSpec).Inc()
			finish(ops, make([]opResult, len(ops)), &UnusableError{Pool: name, Reason: ReasonInvalidSpec, Err: err})
			return
		}
		allocated, err := allocator.ParseRunSet(obj.Status.Allocated)
		if err != nil {
			p.metrics.Unusable.WithLabelValues(name, ReasonCorruptStatus).Inc()
			finish(ops, make([]opResult, len(ops)), &UnusableError{Pool: name, Reason: ReasonCorruptStatus, Err: err})
			return
		}
		var blocked allocator.RunSet
		if hasAllocation(ops) {
			if blocked, err = p.blocked(ctx, pool, specCached); err != nil {
				// fail closed: an allocation that cannot know what is off limits gets nothing
				refuseAllocationsWith(ops, fmt.Errorf("IPPool %s: %w", name, err))
				if ops = releasesOnly(ops); len(ops) == 0 {
					return
				}
			}
		}
		// a cursor that does not parse only costs where the search starts
		cursor, _ := strconv.ParseUint(obj.Status.Cursor, 10, 64)
		st := &allocator.State{Pool: pool, Allocated: allocated, Cursor: cursor}
		quarantined, qChanged := liveQuarantine(obj.Status.Quarantined, time.Now())
		results, changed := p.apply(st, ops, blocked, &quarantined)
		for i, op := range ops {
			if op.kind == opRemark && remark != nil {
				results[i].lost = results[0].lost // the re-mark this op waited for
			}
		}
		changed = changed || qChanged
		p.metrics.Quarantined.WithLabelValues(name).Set(float64(len(quarantined)))
		counted := v1.IPPoolStatus{Quarantined: quarantined}
		counted.SetCounts(pool.TotalCount(), int64(st.Allocated.Count()))
		if !changed && obj.Status.TotalIPCount == counted.TotalIPCount && obj.Status.AllocatedIPCount == counted.AllocatedIPCount &&
			obj.Status.FreeIPCount == counted.FreeIPCount && obj.Status.Usage == counted.Usage {
			finish(ops, results, nil)
			return
		}
		// a copy of what was read, so what others keep in the status (the controller's
		// conditions) stays; the resourceVersion guard makes a write that raced theirs retry
		next := obj.DeepCopy()
		next.Status.Allocated = st.Allocated.String()
		next.Status.Quarantined = quarantined
		next.Status.SetCounts(counted.TotalIPCount, counted.AllocatedIPCount)
		if hasAllocation(ops) {
			next.Status.Cursor = strconv.FormatUint(st.Cursor, 10)
		}
		err = p.writer.Status().Update(ctx, next)
		switch {
		case err == nil:
			q.latest = next
			p.metrics.wrote(name, next.ResourceVersion, time.Now())
			p.metrics.observeCommit(len(ops), attempt, time.Since(start))
			finish(ops, results, nil)
			return
		case apierrors.IsConflict(err) && attempt < maxCommitAttempts:
			p.metrics.Conflicts.Inc()
			q.latest = nil
			fresh := &v1.IPPool{}
			if err := p.api.Get(ctx, client.ObjectKey{Name: name}, fresh); err == nil {
				q.latest = fresh
			}
			continue
		default:
			p.log.Warn("pool status update failed", zap.String("pool", name), zap.Int("attempt", attempt), zap.Error(err))
			finish(ops, make([]opResult, len(ops)), fmt.Errorf("updating IPPool %s status: %w", name, err))
			return
		}
	}
}

// apply runs each operation on the state; decisions are only final once written.
func (p *PoolCommitter) apply(st *allocator.State, ops []*poolOp, blocked allocator.RunSet, quarantined *[]v1.QuarantinedIP) ([]opResult, bool) {
	blocked = blocked.Clone()
	for _, q := range *quarantined {
		if a, err := netip.ParseAddr(q.IP); err == nil {
			if o, ok := st.Pool.Offset(a); ok {
				blocked.Add(o)
			}
		}
	}
	results := make([]opResult, len(ops))
	changed := false
	for i, op := range ops {
		r := &results[i]
		r.pool = st.Pool
		switch op.kind {
		case opAllocate:
			r.addr, r.err = st.Allocate(blocked)
			r.changed = r.err == nil
		case opAllocateExact:
			r.addr, r.err = st.AllocateExact(op.addr, blocked)
			r.changed = r.err == nil
		case opRelease:
			r.changed = st.Release(op.addr)
		case opEnsure:
			for _, a := range op.addrs {
				if st.Ensure(a) {
					r.lost = append(r.lost, a)
				}
			}
			r.changed = len(r.lost) > 0
		case opQuarantine:
			st.Release(op.addr)
			*quarantined = append(withoutIP(*quarantined, op.addr.String()),
				v1.QuarantinedIP{IP: op.addr.String(), MAC: op.mac, Until: metav1.NewTime(op.until)})
			if o, ok := st.Pool.Offset(op.addr); ok {
				blocked.Add(o)
			}
			r.changed = true
		}
		changed = changed || r.changed
	}
	return results, changed
}

// current returns the newest known pool object: the informer's copy, or this process'
// own last write when the informer has not caught up with it yet. specCached says whether
// the informer has seen this spec: when it has not, what the informer knows of other pools
// may predate it, and overlaps are checked against the API instead (overlap.go).
func (p *PoolCommitter) current(ctx context.Context, name string, q *poolQueue) (obj *v1.IPPool, specCached bool, err error) {
	cached := &v1.IPPool{}
	err = p.cache.Get(ctx, client.ObjectKey{Name: name}, cached)
	specCached = err == nil
	if apierrors.IsNotFound(err) {
		// the cache may lag a just-created pool: ask the API before giving up
		if err = p.api.Get(ctx, client.ObjectKey{Name: name}, cached); apierrors.IsNotFound(err) {
			q.latest, q.gone = nil, true
			return nil, false, fmt.Errorf("%w: %s", ErrPoolNotFound, name)
		}
	}
	if err != nil {
		return nil, false, fmt.Errorf("reading IPPool %s: %w", name, err)
	}
	q.gone = false
	if q.latest != nil && q.latest.UID == cached.UID && newer(q.latest.ResourceVersion, cached.ResourceVersion) {
		return q.latest, specCached && q.latest.Generation == cached.Generation, nil
	}
	q.latest = nil
	return cached, specCached, nil
}

// newer compares resourceVersions numerically. They are opaque by contract; a wrong guess
// costs only one conflict and a fresh read, never correctness.
func newer(a, b string) bool {
	x, err1 := strconv.ParseUint(a, 10, 64)
	y, err2 := strconv.ParseUint(b, 10, 64)
	return err1 == nil && err2 == nil && x > y
}

func (p *PoolCommitter) parse(obj *v1.IPPool, q *poolQueue) (*allocator.PoolView, error) {
	if q.parsed != nil && q.parsedUID == string(obj.UID) && q.parsedGen == obj.Generation && obj.Generation != 0 {
		return q.parsed, nil
	}
	pool, err := allocator.NewPool(obj.Name, &obj.Spec)
	if err != nil {
		return nil, err
	}
	q.parsed, q.parsedUID, q.parsedGen = pool, string(obj.UID), obj.Generation
	return pool, nil
}

func finish(ops []*poolOp, results []opResult, err error) {
	for i, op := range ops {
		if err != nil {
			results[i].err = err
		}
		if op.settle != nil {
			op.settle(results[i])
		}
		op.done <- results[i]
	}
}

// liveQuarantine drops expired entries; it reports whether any was dropped.
func liveQuarantine(list []v1.QuarantinedIP, now time.Time) ([]v1.QuarantinedIP, bool) {
	var out []v1.QuarantinedIP
	for _, q := range list {
		if q.Until.Time.After(now) {
			out = append(out, q)
		}
	}
	return out, len(out) != len(list)
}

func withoutIP(list []v1.QuarantinedIP, ip string) []v1.QuarantinedIP {
	var out []v1.QuarantinedIP
	for _, q := range list {
		if q.IP != ip {
			out = append(out, q)
		}
	}
	return out
}

func hasAllocation(ops []*poolOp) bool {
	for _, op := range ops {
		if op.kind == opAllocate || op.kind == opAllocateExact {
			return true
		}
	}
	return false
}

// refuseAllocations answers the allocations of a batch with ErrPoolDeleting, leaving the
// other operations unanswered (they are committed next).
func refuseAllocations(ops []*poolOp) { refuseAllocationsWith(ops, ErrPoolDeleting) }

func refuseAllocationsWith(ops []*poolOp, err error) {
	for _, op := range ops {
		if op.kind == opAllocate || op.kind == opAllocateExact {
			op.done <- opResult{err: err}
		}
	}
}

func releasesOnly(ops []*poolOp) []*poolOp {
	var out []*poolOp
	for _, op := range ops {
		if op.kind != opAllocate && op.kind != opAllocateExact {
			out = append(out, op)
		}
	}
	return out
}
