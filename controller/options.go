package controller

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/underpool/underpool/controller/webhook"
	"github.com/underpool/underpool/ipamd/store"
)

// Options configure the controller mode.
type Options struct {
	// Webhook is where the webhook listens, how the apiserver reaches it and how long its
	// certificates live; Run sets its CANamespace to LeaderElectionNamespace (the
	// replicas that elect a leader share one CA).
	Webhook webhook.Options
	// LeaderElectionNamespace holds the lease that makes one controller active; empty
	// disables leader election (a single replica).
	LeaderElectionNamespace string
	HealthAddress           string
	// MetricsAddress serves /metrics (controller-runtime's registry); empty disables.
	MetricsAddress string
	// Registry receives the controller's and the webhook's metrics (nil: not registered);
	// pass controller-runtime's metrics.Registry to have them served on MetricsAddress.
	Registry prometheus.Registerer
	// OrphanInterval is how often pool addresses no Endpoint holds are looked for (0: never);
	// one seen unheld for OrphanGrace is freed.
	OrphanInterval, OrphanGrace time.Duration
	// RecycleInterval is how often the Endpoints of nodes no ipamd looks after (gone, out
	// of service, unready for longer than RecycleGrace) are judged (0: never); attachments
	// younger than RecycleGrace are left alone.
	RecycleInterval, RecycleGrace time.Duration
	// CountsInterval bounds how often a pool's status (the counts mirrored from its
	// PoolAllocation, its conditions) is written: at most once per pool per interval
	// (zero: DefaultCountsInterval), as every write is an event on every node.
	CountsInterval time.Duration
	// CommitWindow is the release protocol's bound (zero: store.DefaultWindow); every
	// ipamd must run with the same. The orphan sweeper spaces its phases by it.
	CommitWindow store.Window
}

// webhookOptions are the webhook's, with the CA shared by the replicas that elect a
// leader (a single replica makes its own).
func (o Options) webhookOptions() webhook.Options {
	w := o.Webhook
	w.CANamespace = o.LeaderElectionNamespace
	return w
}
