// Package store commits allocation decisions to the API: pool status (the commit point
// that makes an address taken) and Endpoints (who holds it). It owns the PoolCommitter
// (batched, resourceVersion-guarded status writes; the pure planning in plan.go), the
// commit window that bounds how late a dependent write may land (window.go, the release
// protocol of docs/design.md), the Endpoint store, ReservedIP reads, quarantine, the
// overlap footprints and the reclaim marks the orphan sweeper leaves. Reads come from
// informer caches; every write is guarded by resourceVersion, and a conflict is retried on
// fresh state, so two ipamds can never both take one address.
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
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/core/allocator"
)

// ErrPoolNotFound means no IPPool of that name exists.
var ErrPoolNotFound = errors.New("pool not found")

// ErrStateLost means the pool's PoolAllocation was deleted while the pool exists.
var ErrStateLost = errors.New("pool allocation state lost")

// ErrPoolImporting means the pool's imported allocation state is still being written.
var ErrPoolImporting = errors.New("pool is being imported")

// ErrPoolDeleting means the pool is being deleted and hands out nothing more.
var ErrPoolDeleting = errors.New("pool is being deleted")

// ErrPoolUnprotected means the pool lacks its protection finalizer (v1.PoolProtection),
// which the controller adds to every pool: until it has it, the pool could be deleted
// at once with its addresses held, so nothing is handed out from it.
var ErrPoolUnprotected = errors.New("pool has no protection finalizer yet")

// DefaultCommitPatience bounds how long one batch keeps retrying conflicts (with
// jittered backoff) before it fails: long enough that a rollout of many nodes on one pool
// converges, short enough that a stuck pool fails the ADD, which the kubelet retries.
const DefaultCommitPatience = 30 * time.Second

// DefaultProtectionPatience is how long an allocation waits for a new pool's protection
// finalizer (the controller adds it within moments of the pool's creation).
const DefaultProtectionPatience = 10 * time.Second

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
	// release, quarantine: the pool incarnation the address was handed out from ("" for
	// records older than the field: any), and the last moment the op may be planned
	// (Window.SendBy of its evidence; zero: no bound, for tests of the queue alone)
	poolUID string
	sendBy  time.Time
	bound   *quarantineBound // quarantine's limits and result (quarantine.go)
	done    chan opResult
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

	// alloc is the pool's allocation state as this process last wrote or read it. It is
	// planned from without a read: nobody watches states, and a write of it that is stale
	// fails its resourceVersion guard, after which it is read again.
	alloc *v1.PoolAllocation
	// aliveAt is when the API last showed the pool alive before alloc, not created yet,
	// was made: the create must be sent within half a window of it
	aliveAt time.Time
	// lostUID is the pool incarnation whose state this process had and found deleted: it
	// is never made again empty (status.allocationUID tells the other nodes the same,
	// once the controller has recorded it)
	lost      bool
	lostUID   types.UID
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

	// Guarded by PoolCommitter.mu (prefetch.go): the pool as this process' last write left
	// it, the address prefetched for the next ADD, whether one is being prefetched, and
	// when the last allocation from the pool was made.
	room      room
	slot      *prefetched
	filling   chan struct{} // closed when the prefetch under way has its answer
	lastAlloc time.Time
}

// room is what the prefetch needs of a pool's last write: the spec generation it was
// planned on and how much of the pool is free (written: there was one).
type room struct {
	written     bool
	gen         int64
	free, total int64
}

// BlockedFunc returns offsets of a pool that must not be handed out (reserved
// addresses). An error fails the batch's allocations: not knowing what is reserved is no
// reason to hand it out.
type BlockedFunc func(context.Context, *allocator.PoolView) (allocator.RunSet, error)

// PoolCommitter commits allocation decisions to pool status: one queue per pool, one
// status write per batch, conflicts retried on fresh state after a jittered backoff. It
// alone writes pool status on a node.
type PoolCommitter struct {
	writer  client.Client
	cache   client.Reader // informer-backed
	api     client.Reader // uncached, for fresh state after a conflict
	log     *zap.Logger
	metrics *Metrics
	// reserved may be nil; addresses other pools share are blocked besides, always (overlap.go).
	reserved BlockedFunc

	// Window is the release protocol's bound (zero: DefaultWindow); Clock tells the time
	// and waits (nil: the real clock); Jitter returns a random duration in [0, d) for the
	// conflict backoff (nil: math/rand). The simulation sets all three.
	Window Window
	Clock  clock.Clock
	Jitter func(d time.Duration) time.Duration
	// Prefetch turns on the prefetched address per pool (prefetch.go): an ADD on a node
	// that keeps allocating from a pool finds its address committed ahead of it. Off,
	// every ADD makes its own pool commit.
	Prefetch bool
	// PrefetchIdle (zero: DefaultPrefetchIdle) is how long a prefetched address waits for
	// its ADD, and how recent the last ADD must be for a node to count as busy with a pool.
	PrefetchIdle time.Duration
	// Patience bounds one batch's conflict retries (zero: DefaultCommitPatience);
	// ProtectionPatience how long an allocation waits for a new pool's protection
	// finalizer (zero: DefaultProtectionPatience).
	Patience, ProtectionPatience time.Duration

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

// Grant is an address a pool handed out: the address with the pool's prefix length, the
// pool as the commit parsed it, and the pool's UID (a release names it, see Free).
type Grant struct {
	Addr    netip.Prefix
	Pool    *allocator.PoolView
	PoolUID string
	// Evidence is set when the address was allocated before the ADD that takes it
	// (prefetch.go): the moment its evidence was taken, which bounds the Endpoint write
	// that records it (Window.SendBy) as the ADD's own evidence would.
	Evidence time.Time
}

// Allocate takes the next free address of the pool.
func (p *PoolCommitter) Allocate(ctx context.Context, pool string) (Grant, error) {
	if g, ok := p.takePrefetched(ctx, pool); ok {
		p.metrics.countAllocation(pool, nil)
		return g, nil
	}
	r := p.submit(ctx, pool, &poolOp{kind: opAllocate})
	p.metrics.countAllocation(pool, r.err)
	return grantOf(r), r.err
}

// AllocateExact takes addr if the pool may hand it out and nobody holds it.
func (p *PoolCommitter) AllocateExact(ctx context.Context, pool string, addr netip.Addr) (Grant, error) {
	r := p.submit(ctx, pool, &poolOp{kind: opAllocateExact, addr: addr})
	p.metrics.countAllocation(pool, r.err)
	return grantOf(r), r.err
}

func grantOf(r opResult) Grant {
	g := Grant{Addr: r.addr, Pool: r.pool}
	if r.pool != nil {
		g.PoolUID = r.pool.UID
	}
	return g
}

// Free is one address to give back, with what entitles the free (docs/design.md, the
// release protocol): the pool incarnation it was handed out from, and when the evidence
// that nobody holds it any more was gathered - the moment before the Endpoint write that
// removed its record (or, for a rollback, before the pool commit that handed it out) was
// sent. The free is planned only within the first half of the commit window after it.
type Free struct {
	Pool     string
	PoolUID  string // "" for records older than the field: any incarnation
	Addr     netip.Addr
	Evidence time.Time
}

// Release frees the address; freeing a free address, or one of a pool that is gone or
// was made again under the same name, succeeds and frees nothing. ErrWindowClosed means
// the evidence was too old to act on: the address is left for the orphan sweeper.
func (p *PoolCommitter) Release(ctx context.Context, f Free) error {
	return p.ReleaseQueued(ctx, f)()
}

// ReleaseQueued is Release in two steps: when it returns, the free is in its pool's
// queue, ahead of any op queued after it (an ADD that follows a DEL on this node can be
// given the address); the function it returns waits for the outcome.
func (p *PoolCommitter) ReleaseQueued(ctx context.Context, f Free) (wait func() error) {
	op := &poolOp{kind: opRelease, addr: f.Addr, poolUID: f.PoolUID, sendBy: p.Window.SendBy(f.Evidence),
		done: make(chan opResult, 1), queued: p.now()}
	p.enqueue(ctx, f.Pool, op)
	return func() error {
		r := <-op.done
		if errors.Is(r.err, ErrPoolNotFound) {
			return nil // nothing to free in a pool that is gone
		}
		p.metrics.Releases.WithLabelValues(f.Pool, resultOf(r.err)).Inc()
		return r.err
	}
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
	view, err := allocator.NewPool(obj.Name, &obj.Spec)
	if err != nil {
		return nil, err
	}
	view.UID = string(obj.UID)
	return view, nil
}

func (p *PoolCommitter) submit(ctx context.Context, pool string, op *poolOp) opResult {
	op.done = make(chan opResult, 1)
	op.queued = p.now()
	p.enqueue(ctx, pool, op)
	return <-op.done
}

// enqueue adds ops to the pool's queue and starts its worker when idle.
func (p *PoolCommitter) enqueue(ctx context.Context, pool string, ops ...*poolOp) {
	p.mu.Lock()
	defer p.mu.Unlock()
	q := p.queueLocked(pool)
	q.pending = append(q.pending, ops...)
	if !q.running {
		q.running = true
		// the worker outlives the caller's context on purpose: a committed decision must
		// reach its waiter or be undone, never be abandoned half-way
		go p.drain(context.WithoutCancel(ctx), pool, q)
	}
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

// current returns the pool object from the informer, or from the API when the informer
// has not seen it yet. specCached says whether the informer has seen it: when it has not,
// what the informer knows of other pools may predate it, and overlaps are checked against
// the API instead (overlap.go).
func (p *PoolCommitter) current(ctx context.Context, name string, q *poolQueue) (obj *v1.IPPool, specCached bool, err error) {
	obj = &v1.IPPool{}
	err = p.cache.Get(ctx, client.ObjectKey{Name: name}, obj)
	specCached = err == nil
	if apierrors.IsNotFound(err) {
		// the cache may lag a just-created pool: ask the API before giving up
		if err = p.api.Get(ctx, client.ObjectKey{Name: name}, obj); apierrors.IsNotFound(err) {
			q.alloc, q.gone = nil, true
			return nil, false, fmt.Errorf("%w: %s", ErrPoolNotFound, name)
		}
	}
	if err != nil {
		return nil, false, fmt.Errorf("reading IPPool %s: %w", name, err)
	}
	q.gone = false
	return obj, specCached, nil
}

// state returns the allocation state of pool to plan from: this process' own last write
// or read of it (kept), or a read from the API; an empty one, not yet created, when the
// pool has none. A state naming another incarnation of the pool is an earlier pool's of the same
// name: it is deleted, never served (dropEarlier).
func (p *PoolCommitter) state(ctx context.Context, pool *v1.IPPool, q *poolQueue) (alloc *v1.PoolAllocation, kept bool, err error) {
	if q.alloc != nil && q.alloc.PoolUID == pool.UID {
		return q.alloc, true, nil
	}
	q.alloc = nil
	for range 3 {
		got := &v1.PoolAllocation{}
		err := p.api.Get(ctx, client.ObjectKey{Name: pool.Name}, got)
		switch {
		case apierrors.IsNotFound(err):
			// the first state of the pool: make sure from the API that the pool is alive now
			// (a cache may still hold a pool that went, whose closed state is gone too), and
			// create it within half a window of that read (write), while a gone pool's
			// closed state is still in the way (AllocationOf)
			// The first state holds what the pool's status kept before PoolAllocations
			// (an upgrade), as the API has it now.
			readAt := p.now()
			now, err := p.requireCurrent(ctx, pool)
			if err != nil {
				return nil, false, err
			}
			if now.Status.AllocationUID != "" || q.lost && q.lostUID == pool.UID {
				return nil, false, fmt.Errorf("%w: IPPool %s had PoolAllocation %s (uid %s), which is gone while the pool exists: "+
					"who holds its addresses is unknown, so nothing is handed out from it; restore the PoolAllocation (kubectl apply "+
					"a backup), or delete the pool once no pod uses it", ErrStateLost, pool.Name, pool.Name, now.Status.AllocationUID)
			}
			q.alloc, q.aliveAt = v1.AllocationOf(now), readAt
			return q.alloc, false, nil
		case err != nil:
			return nil, false, fmt.Errorf("reading PoolAllocation %s: %w", pool.Name, err)
		case got.PoolUID == pool.UID:
			q.alloc = got
			return got, false, nil
		}
		if err := p.dropEarlier(ctx, pool, got); err != nil {
			return nil, false, err
		}
	}
	return nil, false, fmt.Errorf("PoolAllocation %s keeps naming another pool than IPPool %s (uid %s); retry", pool.Name, pool.Name, pool.UID)
}

// dropEarlier deletes the allocation state of an earlier pool of the same name (deleted
// once its state was empty and closed; the garbage collector removes such states too,
// when it runs). It first makes sure from the API that pool is the pool now: a cache
// lagging a pool made again would otherwise take the new pool's state for an earlier one.
// The delete is guarded by the state's resourceVersion, so it removes only what was read.
func (p *PoolCommitter) dropEarlier(ctx context.Context, pool *v1.IPPool, earlier *v1.PoolAllocation) error {
	if _, err := p.requireCurrent(ctx, pool); err != nil {
		return err
	}
	p.log.Info("dropping the allocation state of an earlier pool of the same name", zap.String("pool", pool.Name),
		zap.String("stateOf", string(earlier.PoolUID)), zap.String("now", string(pool.UID)))
	err := p.writer.Delete(ctx, earlier, client.Preconditions{UID: &earlier.UID, ResourceVersion: &earlier.ResourceVersion})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		return fmt.Errorf("deleting the earlier pool's PoolAllocation %s: %w", pool.Name, err)
	}
	return nil
}

// requireCurrent reads the pool from the API and fails unless it is still the incarnation
// the cache gave; it returns what it read.
func (p *PoolCommitter) requireCurrent(ctx context.Context, pool *v1.IPPool) (*v1.IPPool, error) {
	now := &v1.IPPool{}
	err := p.api.Get(ctx, client.ObjectKey{Name: pool.Name}, now)
	switch {
	case apierrors.IsNotFound(err):
		return nil, fmt.Errorf("%w: %s (deleted moments ago)", ErrPoolNotFound, pool.Name)
	case err != nil:
		return nil, fmt.Errorf("reading IPPool %s: %w", pool.Name, err)
	case now.UID != pool.UID:
		return nil, fmt.Errorf("IPPool %s was deleted and made again moments ago; retry", pool.Name)
	}
	return now, nil
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
	pool.UID = string(obj.UID)
	q.parsed, q.parsedUID, q.parsedGen = pool, string(obj.UID), obj.Generation
	return pool, nil
}

func finish(ops []*poolOp, results []opResult, err error) {
	for i, op := range ops {
		if err != nil {
			results[i].err = err
		}
		answer(op, results[i])
	}
}

// answer gives op its result, after its settle hook has run: every op is answered
// through here, so a hook (a re-mark's bookkeeping, a prefetch's slot) never misses one.
func answer(op *poolOp, r opResult) {
	if op.settle != nil {
		op.settle(r)
	}
	op.done <- r
}

func hasAllocation(ops []*poolOp) bool {
	for _, op := range ops {
		if op.kind == opAllocate || op.kind == opAllocateExact {
			return true
		}
	}
	return false
}

// refuseAllocationsWith answers the allocations of a batch with err, leaving the other
// operations unanswered (they are committed next).
func refuseAllocationsWith(ops []*poolOp, err error) {
	for _, op := range ops {
		if op.kind == opAllocate || op.kind == opAllocateExact {
			answer(op, opResult{err: err})
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
