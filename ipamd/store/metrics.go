package store

import (
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/underpool/underpool/core/allocator"
)

// Metrics counts what the store does; register them with the daemon's registry.
type Metrics struct {
	Commits     prometheus.Counter
	Conflicts   prometheus.Counter
	BatchSize   prometheus.Histogram
	CommitDelay prometheus.Histogram
	// QueueWait is how long an operation waited in its pool's commit queue before the
	// batch that carries it started: the part of an ADD's latency other requests cause.
	QueueWait prometheus.Histogram
	// Allocations and Releases count address operations by pool and result (ok,
	// exhausted, conflict, error); a rollback of a failed ADD is a release too.
	Allocations *prometheus.CounterVec
	Releases    *prometheus.CounterVec
	// Quarantined is, per pool, the addresses the pool allocation state this node last
	// wrote or read keeps out of allocation because another host answered for them.
	Quarantined *prometheus.GaugeVec
	// PendingRemark counts, per pool and reason, the addresses this node's Endpoints hold
	// that could not be re-marked in it; the pool hands nothing out while it is set.
	PendingRemark *prometheus.GaugeVec
	// Unusable counts, per pool and reason, commits refused because the pool's spec does
	// not parse or its status is corrupt.
	Unusable *prometheus.CounterVec
	// LateFrees counts frees not sent because their commit window had closed (the
	// release protocol): each leaves an address for the orphan sweeper.
	LateFrees prometheus.Counter
	// Prefetched counts, per pool, what happened to addresses prefetched for the next ADD
	// (prefetch.go): allocated ahead, taken by an ADD, freed untaken.
	Prefetched *prometheus.CounterVec
}

// Results of an address operation, the result label of Allocations and Releases.
const (
	ResultOK        = "ok"
	ResultExhausted = "exhausted"
	ResultConflict  = "conflict" // conflict retries exhausted
	ResultError     = "error"
)

var latencyBuckets = prometheus.ExponentialBuckets(0.001, 2, 14)

// NewMetrics creates the store metrics and registers them with reg (nil: unregistered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Commits: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "underpool_pool_commits_total", Help: "Pool allocation state (PoolAllocation) writes."}),
		Conflicts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "underpool_pool_commit_conflicts_total", Help: "Pool allocation state writes retried after a resourceVersion conflict."}),
		BatchSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "underpool_pool_commit_batch_size", Help: "Operations committed by one pool allocation state write.",
			Buckets: []float64{1, 2, 4, 8, 16, 32, 64, 128}}),
		CommitDelay: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "underpool_pool_commit_seconds", Help: "Time from the start of a batch to its successful write.",
			Buckets: latencyBuckets}),
		QueueWait: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "underpool_pool_commit_queue_wait_seconds", Help: "Time an operation waited in its pool's commit queue before its batch started.",
			Buckets: latencyBuckets}),
		Allocations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "underpool_pool_allocations_total", Help: "Address allocations committed or refused, by pool and result (ok, exhausted, conflict, error)."},
			[]string{"pool", "result"}),
		Releases: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "underpool_pool_releases_total", Help: "Address releases, by pool and result (ok, conflict, error)."},
			[]string{"pool", "result"}),
		Quarantined: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "underpool_pool_quarantined_addresses", Help: "Addresses the pool keeps out of allocation because another host answered for them, as this node last saw the pool."},
			[]string{"pool"}),
		PendingRemark: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "underpool_pool_pending_remark_addresses",
			Help: "Addresses this node's Endpoints hold that could not be re-marked in their pool, by pool and reason (invalid_spec, corrupt_status, write_failed); the pool hands nothing out meanwhile."},
			[]string{"pool", "reason"}),
		Unusable: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "underpool_pool_unusable_total",
			Help: "Commits refused because the pool's spec does not parse (invalid_spec) or its PoolAllocation state.allocated is corrupt (corrupt_status), by pool and reason."},
			[]string{"pool", "reason"}),
		LateFrees: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "underpool_pool_late_frees_total",
			Help: "Frees not sent because the evidence for them was older than half the commit window; each address is left for the orphan sweeper."}),
		Prefetched: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "underpool_pool_prefetched_total",
			Help: "Addresses held ready for this node's next ADD, by pool and event: allocated (committed ahead of the ADD), taken (by an ADD, which then made one write), freed (nobody took it in time)."},
			[]string{"pool", "event"}),
	}
	if reg != nil {
		reg.MustRegister(m.Commits, m.Conflicts, m.BatchSize, m.CommitDelay, m.QueueWait, m.Allocations, m.Releases,
			m.Quarantined, m.PendingRemark, m.Unusable, m.LateFrees, m.Prefetched)
	}
	return m
}

func (m *Metrics) observeCommit(ops, attempts int, d time.Duration) {
	m.Commits.Inc()
	m.BatchSize.Observe(float64(ops))
	m.CommitDelay.Observe(d.Seconds())
}

// resultOf names an operation's outcome for the result label.
func resultOf(err error) string {
	switch {
	case err == nil:
		return ResultOK
	case errors.Is(err, allocator.ErrExhausted):
		return ResultExhausted
	case apierrors.IsConflict(err):
		return ResultConflict
	}
	return ResultError
}

// forget drops what is remembered of a deleted pool, and every series labelled with it:
// a cluster that makes and deletes pools (application pools come and go with their
// workloads) would otherwise export each pool that ever was, for the daemon's life.
func (m *Metrics) forget(pool string) {
	byPool := prometheus.Labels{"pool": pool}
	m.Allocations.DeletePartialMatch(byPool)
	m.Releases.DeletePartialMatch(byPool)
	m.Quarantined.DeletePartialMatch(byPool)
	m.PendingRemark.DeletePartialMatch(byPool)
	m.Unusable.DeletePartialMatch(byPool)
	m.Prefetched.DeletePartialMatch(byPool)
}

// countAllocation counts an allocation's outcome. A pool that does not exist gets no
// series: it would be made again after the pool's series were dropped (forget), and the
// service counts the failure (no_eligible_pool) without a pool label.
func (m *Metrics) countAllocation(pool string, err error) {
	if errors.Is(err, ErrPoolNotFound) {
		return
	}
	m.Allocations.WithLabelValues(pool, resultOf(err)).Inc()
}

// Deleted is told every IPPool the informer reports deleted: its series go, and so does
// its commit queue when idle (a busy one is dropped by its worker, which finds the pool
// gone; one with a pending re-mark waits for the retry that finds it gone).
func (p *PoolCommitter) Deleted(name string) {
	p.mu.Lock()
	if q := p.queues[name]; q != nil && !q.running && len(q.pending) == 0 && len(q.remark) == 0 {
		delete(p.queues, name)
	}
	p.mu.Unlock()
	p.metrics.forget(name)
}
