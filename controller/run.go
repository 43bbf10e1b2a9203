package controller

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/go-logr/zapr"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/controller/orphans"
	"github.com/underpool/underpool/controller/webhook"
	"github.com/underpool/underpool/ipamd/store"
)

// What the controller may do; `make generate` turns these into deploy/rbac/controller: a
// ClusterRole for what is cluster-wide, and a Role in underpool-system for the two objects
// it keeps there (its lease, its CA Secret), by name. `create` cannot be limited to a name
// (the object has none before it exists), so it is granted apart, in that namespace only.
// The manifests must bind the Role too (RoleBinding underpool-controller).
// +kubebuilder:rbac:groups=underpool.io,resources=ippools,verbs=get;list;watch;update
// +kubebuilder:rbac:groups=underpool.io,resources=subnets;reservedips,verbs=get;list;watch
// +kubebuilder:rbac:groups=underpool.io,resources=reservedips/status,verbs=update
// +kubebuilder:rbac:groups=coordination.k8s.io,namespace=underpool-system,resources=leases,resourceNames=underpool-controller,verbs=get;update;patch
// +kubebuilder:rbac:groups=coordination.k8s.io,namespace=underpool-system,resources=leases,verbs=create
// +kubebuilder:rbac:groups="",resources=events,verbs=create;patch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

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
	// CommitWindow is the release protocol's bound (zero: store.DefaultWindow); every
	// ipamd must run with the same. The orphan sweeper spaces its phases by it.
	CommitWindow store.Window
}

// Run serves the webhook and runs the reconcilers until ctx ends.
func Run(ctx context.Context, cfg *rest.Config, opts Options, log *zap.Logger) error {
	ctrl.SetLogger(zapr.NewLogger(log))
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return err
	}
	if err := v1.AddToScheme(scheme); err != nil {
		return err
	}
	hookOpts := opts.Webhook
	hookOpts.CANamespace = opts.LeaderElectionNamespace
	hook, err := webhook.New(ctx, cfg, hookOpts, webhook.NewMetrics(opts.Registry), log)
	if err != nil {
		return err
	}
	metricsAddress := opts.MetricsAddress
	if metricsAddress == "" {
		metricsAddress = "0" // controller-runtime's "off"
	}
	mgr, err := ctrl.NewManager(cfg, manager.Options{
		Scheme: scheme,
		// every Node is cached, slimmed to what recycling reads
		Cache:                   cache.Options{ByObject: map[client.Object]cache.ByObject{&corev1.Node{}: {Transform: nodeTransform}}},
		Metrics:                 metricsserver.Options{BindAddress: metricsAddress},
		HealthProbeBindAddress:  opts.HealthAddress,
		LeaderElection:          opts.LeaderElectionNamespace != "",
		LeaderElectionID:        "underpool-controller",
		LeaderElectionNamespace: opts.LeaderElectionNamespace,
		WebhookServer:           hook.Server(),
	})
	if err != nil {
		return fmt.Errorf("creating the controller manager: %w", err)
	}
	m := NewMetrics(opts.Registry, mgr.GetCache())
	api := mgr.GetAPIReader()
	if err := hook.SetupWithManager(mgr); err != nil {
		return err
	}
	if err := builder.ControllerManagedBy(mgr).Named("pool-protection").For(&v1.IPPool{}).
		Complete(&poolFinalizer{c: mgr.GetClient()}); err != nil {
		return err
	}
	if err := mgr.GetFieldIndexer().IndexField(ctx, &v1.Endpoint{}, indexEndpointAddress, endpointAddressIndex); err != nil {
		return fmt.Errorf("indexing Endpoints by address: %w", err)
	}
	if err := builder.ControllerManagedBy(mgr).Named("reserved-in-use").For(&v1.ReservedIP{}).
		Watches(&v1.Endpoint{}, reservationsHolding(mgr.GetClient())).Complete(&reservedInUse{c: mgr.GetClient()}); err != nil {
		return err
	}
	allSubnets := enqueueAll(mgr.GetClient(), func() client.ObjectList { return &v1.SubnetList{} })
	if err := builder.ControllerManagedBy(mgr).Named("subnet-status").For(&v1.Subnet{}).
		Watches(&v1.IPPool{}, allSubnets).Complete(&subnetStatus{c: mgr.GetClient()}); err != nil {
		return err
	}
	events := mgr.GetEventRecorder("underpool-controller")
	carving := &sync.Mutex{}
	if err := builder.ControllerManagedBy(mgr).Named("app-pools-deployments").For(&appsv1.Deployment{}).
		Watches(&v1.IPPool{}, enqueueOwner("Deployment"), builder.WithPredicates(poolDeletes)).
		Complete(&appPools{c: mgr.GetClient(), api: api, kind: "Deployment", events: events, carving: carving, changes: m.appPoolChanges}); err != nil {
		return err
	}
	if err := builder.ControllerManagedBy(mgr).Named("app-pools-statefulsets").For(&appsv1.StatefulSet{}).
		Watches(&v1.IPPool{}, enqueueOwner("StatefulSet"), builder.WithPredicates(poolDeletes)).
		Complete(&appPools{c: mgr.GetClient(), api: api, kind: "StatefulSet", events: events, carving: carving, changes: m.appPoolChanges}); err != nil {
		return err
	}
	if err := builder.ControllerManagedBy(mgr).Named("reservedip-entries").For(&v1.ReservedIP{}).
		Complete(&reservedReport{c: mgr.GetClient(), events: events, invalid: m.reservedInvalid}); err != nil {
		return err
	}
	if err := builder.ControllerManagedBy(mgr).Named("pool-overlaps").
		Watches(&v1.IPPool{}, handler.EnqueueRequestsFromMapFunc(func(context.Context, client.Object) []reconcile.Request {
			return []reconcile.Request{{}} // one key: every pool is compared with every other
		})).Complete(&overlapReport{c: mgr.GetClient(), events: events, overlapping: m.poolsOverlapping}); err != nil {
		return err
	}
	oneKey := handler.EnqueueRequestsFromMapFunc(func(context.Context, client.Object) []reconcile.Request {
		return []reconcile.Request{{}} // one key: overlaps and reservations tie every pool to the others
	})
	if err := builder.ControllerManagedBy(mgr).Named("pool-conditions").Watches(&v1.IPPool{}, oneKey).
		Watches(&v1.ReservedIP{}, oneKey).Complete(&poolConditions{c: mgr.GetClient()}); err != nil {
		return err
	}
	// the sweeper's and recycler's writes carry the window's timeout to the apiserver
	timed, err := client.New(opts.CommitWindow.WriterConfig(cfg), client.Options{Scheme: scheme})
	if err != nil {
		return err
	}
	if opts.OrphanInterval > 0 {
		sweeper := &orphans.Sweeper{Log: log, Cache: mgr.GetCache(), API: api, Writer: timed, Window: opts.CommitWindow,
			Found: m.orphansFound, Freed: m.orphansFreed, Unheld: m.orphansUnheld}
		if err := watchPoolsFor(ctx, mgr.GetCache(), sweeper); err != nil {
			return err
		}
		if err := mgr.Add(&orphanLoop{sweeper: sweeper, interval: opts.OrphanInterval, grace: opts.OrphanGrace, log: log}); err != nil {
			return err
		}
	}
	if opts.RecycleInterval > 0 {
		r := newGoneNodeRecycler(timed, mgr.GetCache(), api, opts.RecycleInterval, opts.RecycleGrace, m.goneNodeRecycled, log)
		r.svc.Window = opts.CommitWindow
		r.svc.Pools.(*store.PoolCommitter).Window = opts.CommitWindow
		if err := r.watchDeletedPools(ctx, mgr.GetCache()); err != nil {
			return err
		}
		if err := mgr.Add(r); err != nil {
			return err
		}
	}
	if err := mgr.Add(leaderFlag{gauge: m.leader}); err != nil {
		return err
	}
	// only the leader is ready: the webhook Service sends the apiserver's calls to the
	// replica that also runs the reconcilers and registered the configuration
	if err := mgr.AddReadyzCheck("leader", func(*http.Request) error {
		select {
		case <-mgr.Elected():
			return nil
		default:
			return errors.New("not the elected leader")
		}
	}); err != nil {
		return err
	}
	log.Info("controller starting", zap.String("webhook", net.JoinHostPort(opts.Webhook.Host, strconv.Itoa(opts.Webhook.Port))))
	return mgr.Start(ctx)
}

// enqueueAll maps any event to a reconcile of every object of a kind: used where one
// object's change (an Endpoint, a pool) can alter any of another kind's statuses.
func enqueueAll(c client.Reader, newList func() client.ObjectList) handler.EventHandler {
	return handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, _ client.Object) []reconcile.Request {
		list := newList()
		if err := c.List(ctx, list); err != nil {
			return nil
		}
		items, err := meta.ExtractList(list)
		if err != nil {
			return nil
		}
		reqs := make([]reconcile.Request, 0, len(items))
		for _, item := range items {
			if o, ok := item.(client.Object); ok {
				reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(o)})
			}
		}
		return reqs
	})
}
