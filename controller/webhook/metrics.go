package webhook

import (
	"strings"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the webhook's series, on the registry the caller passes (the controller's
// /metrics in ipamd; a registry of their own in tests).
type Metrics struct {
	rejections *prometheus.CounterVec
}

// NewMetrics makes the webhook's metrics and registers them with reg (nil: unregistered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		rejections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "underpool_webhook_rejections_total",
			Help: "IPPool, Subnet, ReservedIP and UnderlayNetwork writes the webhook refused, by kind and reason (overlap, removes_allocated, orphans_pools, nad_conflict, invalid_spec)."},
			[]string{"kind", "reason"}),
	}
	if reg != nil {
		reg.MustRegister(m.rejections)
	}
	return m
}

// rejected counts a refusal; err is what the validator returned (nil: admitted).
func (m *Metrics) rejected(kind string, err error) {
	if err != nil {
		m.rejections.WithLabelValues(kind, rejectionReason(err)).Inc()
	}
}

// rejectionReason names why validatePool, validateSubnet or the network validator refused,
// from the messages they make (validate.go, network.go; metrics_test.go pins each).
func rejectionReason(err error) string {
	msg := err.Error()
	switch {
	case strings.Contains(msg, "overlaps IPPool"):
		return "overlap"
	case strings.Contains(msg, "still allocated"), strings.Contains(msg, "addresses are allocated"):
		return "removes_allocated"
	case strings.Contains(msg, "would orphan IPPools"):
		return "orphans_pools"
	case strings.Contains(msg, "already renders NetworkAttachmentDefinition"):
		return "nad_conflict"
	}
	return "invalid_spec"
}
