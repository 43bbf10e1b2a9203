package store

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics counts what the store does; register them with the daemon's registry.
type Metrics struct {
	Commits     prometheus.Counter
	Conflicts   prometheus.Counter
	BatchSize   prometheus.Histogram
	CommitDelay prometheus.Histogram
	// PendingRemark counts, per pool and reason, the addresses this node's Endpoints hold
	// that could not be re-marked in it; the pool hands nothing out while it is set.
	PendingRemark *prometheus.GaugeVec
	// Unusable counts, per pool and reason, commits refused because the pool's spec does
	// not parse or its status is corrupt.
	Unusable *prometheus.CounterVec
}

// NewMetrics creates the store metrics and registers them with reg (nil: unregistered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Commits: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "underpool_pool_commits_total", Help: "IPPool status updates written."}),
		Conflicts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "underpool_pool_commit_conflicts_total", Help: "IPPool status updates retried after a resourceVersion conflict."}),
		BatchSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "underpool_pool_commit_batch_size", Help: "Operations committed by one IPPool status update.",
			Buckets: []float64{1, 2, 4, 8, 16, 32, 64, 128}}),
		CommitDelay: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "underpool_pool_commit_seconds", Help: "Time from the start of a batch to its successful write.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14)}),
		PendingRemark: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "underpool_pool_pending_remark_addresses",
			Help: "Addresses this node's Endpoints hold that could not be re-marked in their pool, by pool and reason (invalid_spec, corrupt_status, write_failed); the pool hands nothing out meanwhile."},
			[]string{"pool", "reason"}),
		Unusable: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "underpool_pool_unusable_total",
			Help: "Commits refused because the pool's spec does not parse (invalid_spec) or its status.allocated is corrupt (corrupt_status), by pool and reason."},
			[]string{"pool", "reason"}),
	}
	if reg != nil {
		reg.MustRegister(m.Commits, m.Conflicts, m.BatchSize, m.CommitDelay, m.PendingRemark, m.Unusable)
	}
	return m
}

func (m *Metrics) observeCommit(ops, attempts int, d time.Duration) {
	m.Commits.Inc()
	m.BatchSize.Observe(float64(ops))
	m.CommitDelay.Observe(d.Seconds())
}
