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

	"github.com/underpool/underpool/ipamd/cluster"
	"github.com/underpool/underpool/ipamd/service"
	"github.com/underpool/underpool/ipamd/store"
)

// +kubebuilder:rbac:groups=underpool.io,resources=endpoints,verbs=get;list;watch;update;delete
// +kubebuilder:rbac:groups="",resources=nodes,verbs=list;watch
// +kubebuilder:rbac:groups="",resources=pods,verbs=get
// +kubebuilder:rbac:groups=apps,resources=statefulsets,verbs=get

// goneNodeRecycler recycles the Endpoints of nodes no ipamd looks after: nodes that no
// longer exist, nodes carrying the node.kubernetes.io/out-of-service taint (an operator's
// word that the machine is down; the pod GC then force-deletes its pods), and nodes whose
// Ready condition has not been True for longer than the grace (the machine is dead or cut
// off, and its ipamd with it, while the Node object stays). No other ipamd sees those
// Endpoints (each caches only its own node's), so the elected controller judges them,
// from its cache of every Endpoint and Node, with recycling's own rules
// (service.RecycleGoneNodes). Judging rests on the pod alone (a pod that exists keeps its
// addresses, whatever its node's health), so taking in a node whose ipamd still runs (a
// kubelet down, ipamd up) only costs a read per attachment, never a wrong free. No node
// asks the API about other nodes, so the cost of this is one process's, not every node's
// times the node count.
type goneNodeRecycler struct {
	svc             *service.Service
	pools           *store.PoolCommitter // svc's: told of pool deletions (watchDeletedPools)
	nodes           client.Reader        // the Node informer (name, out-of-service taint, Ready: nodeTransform)
	interval, grace time.Duration
	log             *zap.Logger
}

func (r *goneNodeRecycler) NeedLeaderElection() bool { return true }

func (r *goneNodeRecycler) Start(ctx context.Context) error {
	return everyInterval(ctx, r.interval, func(ctx context.Context) {
		released, err := r.round(ctx, time.Now())
		if err != nil {
			r.log.Warn("recycling the Endpoints of nodes no ipamd looks after stopped early; next round retries", zap.Error(err))
		}
		if len(released) > 0 {
			r.log.Info("recycled Endpoints of nodes no ipamd looks after", zap.Any("byReason", released))
		}
	})
}

func (r *goneNodeRecycler) round(ctx context.Context, now time.Time) (map[string]int, error) {
	lookedAfter, err := r.lookedAfter(ctx, now)
	if err != nil {
		return nil, err
	}
	// a Node registered moments ago may not be cached yet: judging its Endpoints too is
	// safe, as judging rests on the pod alone
	released, err := r.svc.RecycleGoneNodes(ctx, now, r.grace, lookedAfter)
	// the frees go after the records (as a DEL's do); a round ends when they have
	// landed, so the next round and the metrics see what this one did
	r.svc.Settle()
	return released, err
}

// lookedAfter says, from the cache, which nodes have an ipamd recycling their Endpoints:
// the node exists, is not out of service, and has not been unready for longer than the
// grace.
func (r *goneNodeRecycler) lookedAfter(ctx context.Context, now time.Time) (func(string) bool, error) {
	var nodes corev1.NodeList
	if err := r.nodes.List(ctx, &nodes); err != nil {
		return nil, err
	}
	served := make(map[string]bool, len(nodes.Items))
	for i := range nodes.Items {
		n := &nodes.Items[i]
		served[n.Name] = !outOfService(n) && !unreadyFor(n, now, r.grace)
	}
	return func(node string) bool { return served[node] }, nil
}

// unreadyFor reports a node whose Ready condition has not been True for at least grace:
// its kubelet stopped posting (Unknown) or reports the node unhealthy (False), and with
// the machine down its ipamd recycles nothing. A node whose kubelet never posted a status
// at all (NodeStatusNeverUpdated) ran no pod through a kubelet, so nothing of it leaks:
// whatever wrote its Endpoints (an ipamd driven without a kubelet) keeps them.
//
// Why the Node's health and not a heartbeat of ipamd's own: a per-node Lease would also
// catch an ipamd dead beside a live kubelet, but that case leaks nothing (the DaemonSet
// restarts ipamd, which recycles its node when it starts), while the Lease would cost a
// write per node per interval and a namespace-wide Lease grant that would let any node's
// ipamd take the controller's leader Lease (SECURITY.md: ipamd cannot touch it).
func unreadyFor(n *corev1.Node, now time.Time, grace time.Duration) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status != corev1.ConditionTrue && c.Reason != nodeStatusNeverUpdated && now.Sub(c.LastTransitionTime.Time) >= grace
		}
	}
	return false
}

// nodeStatusNeverUpdated is the reason the node-lifecycle controller gives a Node whose
// kubelet never posted a status.
const nodeStatusNeverUpdated = "NodeStatusNeverUpdated"

// outOfService reports the node.kubernetes.io/out-of-service taint, whatever its effect.
func outOfService(n *corev1.Node) bool {
	for _, t := range n.Spec.Taints {
		if t.Key == corev1.TaintNodeOutOfService {
			return true
		}
	}
	return false
}

// nodeTransform keeps of a Node what recycling reads, its name, out-of-service taint and
// Ready condition (status, reason, since when): the rest of a Node's status (images,
// other conditions' messages, addresses) is most of its size, and the controller caches
// every Node of the cluster.
func nodeTransform(obj any) (any, error) {
	n, ok := obj.(*corev1.Node)
	if !ok {
		return obj, nil
	}
	slim := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n.Name, UID: n.UID, ResourceVersion: n.ResourceVersion,
		DeletionTimestamp: n.DeletionTimestamp}}
	for _, t := range n.Spec.Taints {
		if t.Key == corev1.TaintNodeOutOfService {
			slim.Spec.Taints = append(slim.Spec.Taints, t)
		}
	}
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			slim.Status.Conditions = []corev1.NodeCondition{{Type: c.Type, Status: c.Status, Reason: c.Reason, LastTransitionTime: c.LastTransitionTime}}
		}
	}
	return slim, nil
}

// newGoneNodeRecycler wires the recycler: pool commits and Endpoint writes as ipamd makes
// them, reads of pods and StatefulSets straight from the API (the controller caches no
// pod objects, only pod metadata slimmed for application pools: it reads a pod only for
// an Endpoint of a gone node).
// Its releases are counted on recycled (underpool_controller_recycled_total); the service's
// and the committer's other series stay unregistered, as ipamd's own report them.
func newGoneNodeRecycler(writer client.Client, cache, api client.Reader, interval, grace time.Duration,
	recycled *prometheus.CounterVec, log *zap.Logger) *goneNodeRecycler {
	metrics := service.NewMetrics(nil)
	metrics.Recycled = recycled
	pools := store.NewPoolCommitter(writer, cache, api, store.ReservedIPs(cache, log), log, store.NewMetrics(prometheus.NewRegistry()))
	svc := &service.Service{
		Pools:     pools,
		Endpoints: store.NewEndpoints(writer, cache, api),
		Cluster:   cluster.NewUncached(api),
		Log:       log.Named("gone-nodes"),
		Metrics:   metrics,
	}
	return &goneNodeRecycler{svc: svc, pools: pools, nodes: cache, interval: interval, grace: grace, log: log}
}

// watchDeletedPools tells the recycler's committer of every pool deletion, so the per-pool
// state it keeps (commit queue, series) lasts no longer than the pool.
func (r *goneNodeRecycler) watchDeletedPools(ctx context.Context, c cache.Cache) error {
	return store.ObservePools(ctx, c, r.pools)
}
