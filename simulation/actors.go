package simulation

import (
	"context"
	"net/netip"
	"sync/atomic"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/underpool/underpool/controller"
	"github.com/underpool/underpool/controller/orphans"
	"github.com/underpool/underpool/ipamd/cluster"
	"github.com/underpool/underpool/ipamd/service"
	"github.com/underpool/underpool/ipamd/store"
)

// actor is one process: an ipamd on a node, or the elected controller. Killing it ends
// its memory; its goroutines run on, but every gate answers them errKilled, so nothing
// more of theirs reaches the API, except the requests already on the wire.
type actor struct {
	name  string // "ipamd-a.2": node a's second ipamd; "ctl.1"
	node  string // "" for the controller
	dead  atomic.Bool
	cache client.Reader // the informer cache as of the last refresh
	ops   int
	// pausedUntil holds back every call the process makes until then (descheduled)
	pausedUntil time.Time

	// ipamd
	svc   *service.Service
	ready bool
	// the controller
	recycler  *service.Service
	sweeper   *orphans.Sweeper
	finalizer reconcile.Reconciler
	poolUIDs  map[string]string

	// one round of each loop (and one reconcile per pool) at a time, the next an
	// interval after the last ended (or the process started)
	busy    map[string]bool
	started time.Time
	ended   map[string]time.Time
}

func (a *actor) begin(loop string) {
	if a.busy == nil {
		a.busy = map[string]bool{}
	}
	a.busy[loop] = true
}

func (a *actor) end(loop string, now time.Time) {
	a.busy[loop] = false
	if a.ended == nil {
		a.ended = map[string]time.Time{}
	}
	a.ended[loop] = now
}

// nextRound is when the loop's next round is due.
func (a *actor) nextRound(loop string, every time.Duration) time.Time {
	if t, ok := a.ended[loop]; ok {
		return t.Add(every)
	}
	return a.started.Add(every)
}

func (a *actor) isDead() bool { return a != nil && a.dead.Load() }

// gatedPools puts a gate before each request enters a pool's commit queue: which of two
// requests is queued first, and so which batch each joins, is the scheduler's choice,
// never a race between goroutines a commit woke at once.
type gatedPools struct {
	*store.PoolCommitter
	g *gates
	a *actor
}

func (p gatedPools) enter(what string) error {
	return p.g.park(context.Background(), p.a, local, "queue "+what, func(bool) error { return nil })
}

func (p gatedPools) Allocate(ctx context.Context, pool string) (store.Grant, error) {
	if err := p.enter("allocate from " + pool); err != nil {
		return store.Grant{}, err
	}
	return p.PoolCommitter.Allocate(ctx, pool)
}

func (p gatedPools) AllocateExact(ctx context.Context, pool string, addr netip.Addr) (store.Grant, error) {
	if err := p.enter("allocate " + addr.String() + " from " + pool); err != nil {
		return store.Grant{}, err
	}
	return p.PoolCommitter.AllocateExact(ctx, pool, addr)
}

func (p gatedPools) Release(ctx context.Context, f store.Free) error {
	if err := p.enter("free " + f.Addr.String() + " of " + f.Pool); err != nil {
		return err
	}
	return p.PoolCommitter.Release(ctx, f)
}

// ReleaseQueued passes the gate before the free is queued, as Release does; its outcome
// is the caller's to wait for (a DEL answers before it).
func (p gatedPools) ReleaseQueued(ctx context.Context, f store.Free) func() error {
	if err := p.enter("free " + f.Addr.String() + " of " + f.Pool); err != nil {
		return func() error { return err }
	}
	return p.PoolCommitter.ReleaseQueued(ctx, f)
}

func (p gatedPools) Quarantine(ctx context.Context, f store.Free, mac string, until time.Time, limits store.QuarantineLimits) (store.QuarantineResult, error) {
	if err := p.enter("quarantine " + f.Addr.String() + " of " + f.Pool); err != nil {
		return store.QuarantineResult{}, err
	}
	return p.PoolCommitter.Quarantine(ctx, f, mac, until, limits)
}

func (p gatedPools) Remark(ctx context.Context, pool string, addrs []netip.Addr) ([]netip.Addr, error) {
	if err := p.enter("re-mark in " + pool); err != nil {
		return nil, err
	}
	return p.PoolCommitter.Remark(ctx, pool, addrs)
}

func (p gatedPools) RetryRemarks(ctx context.Context) map[string]error {
	if err := p.enter("retry re-marks"); err != nil {
		return map[string]error{"*": err}
	}
	return p.PoolCommitter.RetryRemarks(ctx)
}

// committer builds a pool committer on the simulation's clock, as the daemon wires one.
func (s *sim) committer(a *actor, api client.Client, cache client.Reader) gatedPools {
	pools := store.NewPoolCommitter(api, cache, api, nil, s.logs.logger(a.name), nil)
	pools.Window, pools.Clock = s.window, s.clock
	// as ipamd runs by default: ADDs take addresses committed ahead of them, DELs keep
	// theirs for the next ADD (store/prefetch.go)
	// the scheduler's steps move the clock by seconds: with ipamd's one second, hardly two
	// ADDs would count as a node busy with a pool, and the prefetch would go untested
	pools.Prefetch, pools.PrefetchIdle = true, 20*time.Second
	// half the ceiling: deterministic, and never zero, so a retry always waits on the
	// fake clock (a zero wait would retry at once, as often as the scheduler lets it)
	pools.Jitter = func(d time.Duration) time.Duration {
		if !a.isDead() {
			s.gates.contact()
		}
		return max(d/2, time.Millisecond)
	}
	return gatedPools{PoolCommitter: pools, g: s.gates, a: a}
}

// newIpamd starts an ipamd on node with empty memory and a cache synced now; it serves
// once its Reconcile (an operation like any other) has returned.
func (s *sim) newIpamd(node string) *actor {
	s.incarnations[node]++
	a := &actor{name: "ipamd-" + node[len("node-"):] + "." + itoa(s.incarnations[node]), node: node, started: s.clock.Now()}
	a.cache = snapshotReader{s.contents()}
	api := s.gatedClient(a)
	cache := cacheReader{s: s, a: a, node: node}
	eps := store.NewEndpoints(api, cache, api)
	eps.Clock = s.clock
	a.svc = &service.Service{
		Node:          node,
		Pools:         s.committer(a, api, cache),
		Endpoints:     eps,
		Cluster:       cluster.New(node, cache, api),
		QuarantineFor: time.Minute,
		GCMinAge:      s.gcMinAge,
		Log:           s.logs.logger(a.name),
		Metrics:       service.NewMetrics(nil),
		Window:        s.window,
		Clock:         s.clock,
	}
	s.ipamds[node] = a
	s.actors = append(s.actors, a)
	return a
}

// newController starts the elected controller: the gone nodes' recycler, the orphan
// sweeper and the pool finalizer, with empty memory (a new leader).
func (s *sim) newController() *actor {
	s.incarnations["ctl"]++
	a := &actor{name: "ctl." + itoa(s.incarnations["ctl"]), busy: map[string]bool{}, poolUIDs: map[string]string{}, started: s.clock.Now()}
	a.cache = snapshotReader{s.contents()}
	api := s.gatedClient(a)
	cache := cacheReader{s: s, a: a}
	eps := store.NewEndpoints(api, cache, api)
	eps.Clock = s.clock
	a.recycler = &service.Service{
		Pools:     s.committer(a, api, cache),
		Endpoints: eps,
		Cluster:   cluster.NewUncached(api),
		Log:       s.logs.logger(a.name),
		Metrics:   service.NewMetrics(nil),
		Window:    s.window,
		Clock:     s.clock,
	}
	a.sweeper = &orphans.Sweeper{Writer: api, Cache: cache, API: api, Log: s.logs.logger(a.name), Window: s.window}
	a.finalizer = controller.PoolFinalizer(cachedClient{Client: api, cache: cache})
	s.controller = a
	s.actors = append(s.actors, a)
	s.observePools(a)
	return a
}

// refresh brings an actor's cache up to the API, as its informers eventually do; the
// controller's sweeper is told each pool as its informer handler would be.
func (s *sim) refresh(a *actor) {
	a.cache = snapshotReader{s.contents()}
	if a.sweeper != nil {
		s.observePools(a)
	}
}
