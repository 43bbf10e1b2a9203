package controller

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/underpool/underpool/ipamd/daemon"
	"github.com/underpool/underpool/ipamd/service"
	"github.com/underpool/underpool/ipamd/store"
)

// +kubebuilder:rbac:groups=underpool.io,resources=endpoints,verbs=get;list;watch;update;delete
// +kubebuilder:rbac:groups=underpool.io,resources=ippools/status,verbs=update
// +kubebuilder:rbac:groups="",resources=nodes,verbs=list;watch
// +kubebuilder:rbac:groups="",resources=pods,verbs=get
// +kubebuilder:rbac:groups=apps,resources=statefulsets,verbs=get

// goneNodeRecycler recycles the Endpoints of nodes that no longer exist: their ipamd is
// gone with them, and no other ipamd sees them (each caches only its own node's), so
// the elected controller judges them, from its cache of every Endpoint and Node, with
// recycling's own rules (service.RecycleGoneNodes). No node asks the API about other
// nodes, so the cost of this is one process's, not every node's times the node count.
type goneNodeRecycler struct {
	svc             *service.Service
	pools           *store.PoolCommitter // svc's: told of pool deletions (watchDeletedPools)
	nodes           client.Reader        // the Node informer (metadata only)
	interval, grace time.Duration
	log             *zap.Logger
}

func (r *goneNodeRecycler) NeedLeaderElection() bool { return true }

func (r *goneNodeRecycler) Start(ctx context.Context) error {
	return everyInterval(ctx, r.interval, func(ctx context.Context) {
		released, err := r.round(ctx, time.Now())
		if err != nil {
			r.log.Warn("recycling gone nodes' Endpoints stopped early; next round retries", zap.Error(err))
		}
		if len(released) > 0 {
			r.log.Info("recycled Endpoints of gone nodes", zap.Any("byReason", released))
		}
	})
}

func (r *goneNodeRecycler) round(ctx context.Context, now time.Time) (map[string]int, error) {
	nodes := &metav1.PartialObjectMetadataList{}
	nodes.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("NodeList"))
	if err := r.nodes.List(ctx, nodes); err != nil {
		return nil, err
	}
	exists := make(map[string]bool, len(nodes.Items))
	for _, n := range nodes.Items {
		exists[n.Name] = true
	}
	// a Node registered moments ago may not be cached yet: judging its Endpoints too is
	// safe, as judging rests on the pod alone
	return r.svc.RecycleGoneNodes(ctx, now, r.grace, func(node string) bool { return exists[node] })
}

// newGoneNodeRecycler wires the recycler: pool commits and Endpoint writes as ipamd makes
// them, reads of pods and StatefulSets straight from the API (the controller caches no
// pods: it reads one only for an Endpoint of a gone node).
func newGoneNodeRecycler(writer client.Client, cache, api client.Reader, interval, grace time.Duration, log *zap.Logger) *goneNodeRecycler {
	metrics := service.NewMetrics(nil)
	metrics.Recycled = goneNodeRecycled
	pools := store.NewPoolCommitter(writer, cache, api, store.ReservedIPs(cache, log), log, store.NewMetrics(prometheus.NewRegistry()))
	svc := &service.Service{
		Pools:     pools,
		Endpoints: store.NewEndpoints(writer, cache, api),
		Cluster:   daemon.NewAPICluster(api),
		Log:       log.Named("gone-nodes"),
		Metrics:   metrics,
	}
	return &goneNodeRecycler{svc: svc, pools: pools, nodes: cache, interval: interval, grace: grace, log: log}
}

// watchDeletedPools tells the recycler's committer of every pool deletion, so the per-pool
// state it keeps (commit queue, series) lasts no longer than the pool.
func (r *goneNodeRecycler) watchDeletedPools(ctx context.Context, c cache.Cache) error {
	return daemon.ObservePools(ctx, c, r.pools)
}
