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
	}
	if reg != nil {
		reg.MustRegister(m.Commits, m.Conflicts, m.BatchSize, m.CommitDelay)
	}
	return m
}

func (m *Metrics) observeCommit(ops, attempts int, d time.Duration) {
	m.Commits.Inc()
	m.BatchSize.Observe(float64(ops))
	m.CommitDelay.Observe(d.Seconds())
}
