package daemon

import (
	"context"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/ipamd/cluster"
)

// startInformers starts every informer ipamd reads from, and counts the events each one
// delivers in underpool_ipamd_watch_events_total{resource}: the figure that shows a node
// daemon's watch traffic following its own node, not the cluster (pod churn on other
// nodes must not move it, but for pools the whole cluster shares).
func startInformers(ctx context.Context, informers cache.Cache, reg prometheus.Registerer) error {
	events := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "underpool_ipamd_watch_events_total",
		Help: "Watch events (adds, updates, deletes, the initial list included) ipamd's informers delivered, by resource."},
		[]string{"resource"})
	if err := reg.Register(events); err != nil {
		return err
	}
	watched := []struct {
		resource string
		obj      client.Object
	}{
		{"ippools", &v1.IPPool{}}, {"subnets", &v1.Subnet{}}, {"reservedips", &v1.ReservedIP{}},
		{"endpoints", &v1.Endpoint{}}, {"pods", &corev1.Pod{}}, {"nodes", &corev1.Node{}},
		{"namespaces", cluster.NamespaceMetadata()},
	}
	for _, w := range watched {
		inf, err := informers.GetInformer(ctx, w.obj)
		if err != nil {
			return fmt.Errorf("starting the %s informer: %w", w.resource, err)
		}
		count := events.WithLabelValues(w.resource)
		if _, err := inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
			AddFunc:    func(any) { count.Inc() },
			UpdateFunc: func(_, _ any) { count.Inc() },
			DeleteFunc: func(any) { count.Inc() },
		}); err != nil {
			return fmt.Errorf("counting the %s informer's events: %w", w.resource, err)
		}
	}
	return nil
}
