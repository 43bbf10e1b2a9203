package controller

import (
	"context"

	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Metrics are the controller's series, on the registry the caller passes (controller-
// runtime's in ipamd, served on --metrics-address; a registry of their own in tests). The
// webhook's are its own (webhook.Metrics). Each job is handed the series it writes.
type Metrics struct {
	orphansUnheld, leader            prometheus.Gauge
	orphansFound, orphansFreed       prometheus.Counter
	appPoolChanges, goneNodeRecycled *prometheus.CounterVec
	// poolsOverlapping is how many pools share an address with another. ipamd hands out
	// none of the shared addresses (store/overlap.go), so this is a report, not a hazard:
	// the pools serve less than their specs say until an operator separates them.
	poolsOverlapping prometheus.Gauge
	// reservedInvalid counts, per ReservedIP, the entries that are not a plain address or
	// an ordered range of one family; a ReservedIP without any has no series.
	reservedInvalid *prometheus.GaugeVec
}

// NewMetrics makes the controller's metrics and registers them with reg (nil:
// unregistered), with the capacity series read from pools and their PoolAllocations at scrape time (nil: none).
func NewMetrics(reg prometheus.Registerer, pools client.Reader) *Metrics {
	m := &Metrics{
		orphansUnheld: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "underpool_orphan_unheld_addresses",
			Help: "Allocated pool addresses no Endpoint held at the last sweep; each is freed once unheld for the orphan grace."}),
		orphansFound: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "underpool_orphans_found_total",
			Help: "Orphan addresses found: unheld past the grace and confirmed unheld by an uncached read."}),
		orphansFreed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "underpool_orphans_freed_total",
			Help: "Orphan addresses freed in their pool's PoolAllocation."}),
		appPoolChanges: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "underpool_application_pools_total",
			Help: "Application pools the controller changed, by action (created, resized, deleted)."},
			[]string{"action"}),
		goneNodeRecycled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "underpool_controller_recycled_total",
			Help: "Attachments of Endpoints whose node is gone that the controller released because their owner is gone, by reason."},
			[]string{"reason"}),
		leader: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "underpool_controller_leader",
			Help: "1 on the elected controller replica (it runs the reconcilers, the orphan sweep and serves the webhook), 0 elsewhere."}),
		poolsOverlapping: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "underpool_pools_overlapping",
			Help: "IPPools that share an address with another IPPool; ipamd hands out no shared address until they are separated.",
		}),
		reservedInvalid: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "underpool_reservedip_invalid",
			Help: "Entries of a ReservedIP that are not a plain address or an ordered inclusive range of one family (written past the webhook). ipamd keeps the other entries reserved and reads each bad one fail closed; fix the entries the InvalidEntries event names.",
		}, []string{"reservedip"}),
	}
	if reg != nil {
		reg.MustRegister(m.poolsOverlapping, m.orphansUnheld, m.orphansFound, m.orphansFreed, m.appPoolChanges,
			m.goneNodeRecycled, m.leader, m.reservedInvalid, &capacity{c: pools})
	}
	return m
}

// Application pool actions, the action label of underpool_application_pools_total.
const (
	appPoolCreated = "created"
	appPoolResized = "resized"
	appPoolDeleted = "deleted"
)

// leaderFlag sets underpool_controller_leader once this replica is elected; the manager
// runs it only then, and a replica that loses the lease exits.
type leaderFlag struct{ gauge prometheus.Gauge }

func (leaderFlag) NeedLeaderElection() bool { return true }

func (f leaderFlag) Start(ctx context.Context) error {
	f.gauge.Set(1)
	<-ctx.Done()
	f.gauge.Set(0)
	return nil
}
