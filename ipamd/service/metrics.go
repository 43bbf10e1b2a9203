package service

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics counts requests by operation and outcome.
type Metrics struct {
	Requests   *prometheus.CounterVec
	Latency    *prometheus.HistogramVec
	GCReleased prometheus.Counter
	Recycled   *prometheus.CounterVec
}

// NewMetrics creates the service metrics and registers them with reg (nil: unregistered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "underpool_ipamd_requests_total", Help: "Requests served, by operation and result."},
			[]string{"op", "result"}),
		Latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "underpool_ipamd_request_seconds", Help: "Request latency by operation.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14)}, []string{"op"}),
		GCReleased: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "underpool_ipamd_gc_released_total", Help: "Attachments released by garbage collection."}),
		Recycled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "underpool_ipamd_recycled_total", Help: "Attachments released because their owner is gone, by reason."},
			[]string{"reason"}),
	}
	if reg != nil {
		reg.MustRegister(m.Requests, m.Latency, m.GCReleased, m.Recycled)
	}
	return m
}

func (m *Metrics) observe(op string, start time.Time, err error) {
	result := "ok"
	if err != nil {
		result = "error"
	}
	m.Requests.WithLabelValues(op, result).Inc()
	m.Latency.WithLabelValues(op).Observe(time.Since(start).Seconds())
}
