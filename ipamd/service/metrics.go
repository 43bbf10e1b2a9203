package service

import (
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/underpool/underpool/rpc"
)

// Metrics counts requests by operation and outcome.
type Metrics struct {
	Requests   *prometheus.CounterVec
	Latency    *prometheus.HistogramVec
	GCReleased prometheus.Counter
	Recycled   *prometheus.CounterVec
	// Failures counts failed allocation requests by kind (the Failure* constants).
	Failures *prometheus.CounterVec
	// InFlight is the socket requests being served now, by operation.
	InFlight *prometheus.GaugeVec
	// QuarantineRefused counts addresses found in use on the wire that were released
	// rather than quarantined, by pool and reason (spoofer, full): quarantine.go.
	QuarantineRefused *prometheus.CounterVec
	// Spoofers is, per pool, the MACs this ipamd judges spoofers or proxies now.
	Spoofers *spooferGauge
}

// Kinds of a failed allocation, the kind label of underpool_ipamd_allocation_failures_total.
const (
	FailureExhausted      = "exhausted"        // every eligible pool was full
	FailureNoEligiblePool = "no_eligible_pool" // no candidate pool exists or matches this pod and node
	FailureConflicts      = "conflict_retries_exhausted"
	FailurePoolUnusable   = "pool_unusable" // the pool's spec or status does not parse
	FailureAPIError       = "api_error"     // reading or writing the API failed
	FailureBadRequest     = "bad_request"   // the request, an annotation or the config is wrong
)

// failureRank orders the kinds when several pools failed differently: the kind reported
// is the one an operator must act on first.
var failureRank = map[string]int{FailureNoEligiblePool: 0, FailureExhausted: 1, FailurePoolUnusable: 2, FailureConflicts: 3, FailureAPIError: 4}

// NewMetrics creates the service metrics and registers them with reg (nil: unregistered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "underpool_ipamd_requests_total", Help: "Requests served, by operation and result."},
			[]string{"op", "result"}),
		Latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "underpool_ipamd_request_seconds", Help: "Request latency by operation, commit queue wait included.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14)}, []string{"op"}),
		GCReleased: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "underpool_ipamd_gc_released_total", Help: "Attachments released by garbage collection."}),
		Recycled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "underpool_ipamd_recycled_total", Help: "Attachments released because their owner is gone, by reason."},
			[]string{"reason"}),
		Failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "underpool_ipamd_allocation_failures_total",
			Help: "Allocation requests that failed, by kind (exhausted, no_eligible_pool, conflict_retries_exhausted, pool_unusable, api_error, bad_request)."},
			[]string{"kind"}),
		InFlight: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "underpool_ipamd_requests_in_flight", Help: "Socket requests being served now, by operation."},
			[]string{"op"}),
		QuarantineRefused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "underpool_ipamd_quarantine_refused_total",
			Help: "Addresses found in use on the wire that were released instead of quarantined, by pool and reason: spoofer (the MAC answers for more than --quarantine-per-mac of the pool's addresses), full (the pool's quarantine is at --quarantine-max-share)."},
			[]string{"pool", "reason"}),
		Spoofers: &spooferGauge{vec: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "underpool_ipamd_conflict_spoofers",
			Help: "MACs this ipamd judges spoofers or proxy-ARP hosts in the pool: each answered conflict probes for more than --quarantine-per-mac of its addresses lately; their answers quarantine nothing."},
			[]string{"pool"})},
	}
	// every kind is there from the start, so a rate over it is 0, not absent, until it happens
	for kind := range failureRank {
		m.Failures.WithLabelValues(kind)
	}
	m.Failures.WithLabelValues(FailureBadRequest)
	if reg != nil {
		reg.MustRegister(m.Requests, m.Latency, m.GCReleased, m.Recycled, m.Failures, m.InFlight, m.QuarantineRefused, m.Spoofers.vec)
	}
	return m
}

// begin counts a request in flight until the returned func is called.
func (m *Metrics) begin(op string) func() {
	g := m.InFlight.WithLabelValues(op)
	g.Inc()
	return g.Dec
}

func (m *Metrics) observe(op string, start time.Time, err error) {
	result := "ok"
	if err != nil {
		result = "error"
	}
	m.Requests.WithLabelValues(op, result).Inc()
	m.Latency.WithLabelValues(op).Observe(time.Since(start).Seconds())
}

// observeAllocate is observe plus the failure's kind; a lookup of an attachment ipamd
// does not hold is an answer, not a failure.
func (m *Metrics) observeAllocate(start time.Time, err error) {
	m.observe("allocate", start, err)
	if err == nil {
		return
	}
	var f *failure
	if errors.As(err, &f) {
		m.Failures.WithLabelValues(f.kind).Inc()
		return
	}
	var e *rpc.Error
	if !errors.As(err, &e) {
		m.Failures.WithLabelValues(FailureAPIError).Inc()
		return
	}
	switch e.Code {
	case rpc.CodeNotHeld:
	case rpc.CodeBadRequest:
		m.Failures.WithLabelValues(FailureBadRequest).Inc()
	default:
		m.Failures.WithLabelValues(FailureAPIError).Inc()
	}
}

// failure is an rpc.Error that knows its kind for the failures metric; the socket sees
// only the rpc.Error.
type failure struct {
	kind string
	err  *rpc.Error
}

func (f *failure) Error() string { return f.err.Error() }
func (f *failure) Unwrap() error { return f.err }

// ReadyGauge reports 1 while the service hands out addresses (caches synced, this node's
// Endpoints reconciled), 0 before: what /readyz says, for alerts.
func (s *Service) ReadyGauge() prometheus.Collector {
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "underpool_ipamd_ready", Help: "1 while ipamd serves allocations, 0 while it syncs or reconciles."},
		func() float64 {
			if ready, _ := s.Ready(); ready {
				return 1
			}
			return 0
		})
}
