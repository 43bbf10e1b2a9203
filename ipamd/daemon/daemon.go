// Package daemon wires ipamd together: API clients and informers, the store, the service,
// the socket server, and the health/metrics endpoint.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"runtime/debug"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/record"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/ipamd/cluster"
	"github.com/underpool/underpool/ipamd/rdmastats"
	"github.com/underpool/underpool/ipamd/server"
	"github.com/underpool/underpool/ipamd/service"
	"github.com/underpool/underpool/ipamd/store"
)

// What ipamd may do in the API; `make generate` turns these into deploy/rbac/ipamd. It reads
// pools and writes only their status (the allocation bitmap, a commit point every node
// shares); it never changes a pool's spec or deletes one. The Endpoints it writes are its
// node's, and those of gone nodes or pods it recycles: RBAC cannot tell them apart (see
// SECURITY.md). Pods, Endpoints and its Node are watched with field selectors for its own
// node, but RBAC cannot grant list by selector, so list is cluster-wide. StatefulSets are read one
// by name, never listed; so are the ReplicaSet or Job of a pod that asks for an application
// pool, whose own controller (a CronJob, say) is the workload (apppool.Intermediate).
// +kubebuilder:rbac:groups=underpool.io,resources=ippools;subnets;reservedips,verbs=get;list;watch
// +kubebuilder:rbac:groups=underpool.io,resources=poolallocations,verbs=get;create;update;delete
// +kubebuilder:rbac:groups=underpool.io,resources=endpoints,verbs=get;list;watch;create;update;delete
// +kubebuilder:rbac:groups="",resources=pods;namespaces;nodes,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=events,verbs=create;patch
// +kubebuilder:rbac:groups=apps,resources=statefulsets;replicasets,verbs=get
// +kubebuilder:rbac:groups=batch,resources=jobs,verbs=get

// Options configure one ipamd.
type Options struct {
	Kubeconfig string // empty: in-cluster config
	NodeName   string
	Socket     string
	// SocketGroup, when >= 0, may use the socket besides root (mode 0660, SO_PEERCRED).
	SocketGroup   int
	HealthAddress string // serves /healthz, /readyz and /metrics; empty disables
	// QPS and Burst of the API client: the client-go defaults (5/10) would throttle a node
	// starting many pods at once.
	QPS   float32
	Burst int
	// GCInterval is how often addresses of gone pods and orphans are recycled (0: never).
	GCInterval time.Duration
	// GCGrace protects young attachments and is the margin past a terminating pod's grace
	// period; an orphan must stay unheld this long before it is freed.
	GCGrace time.Duration
	// GCMinAge and GCMaxShare bound CNI GC (see service.Service).
	GCMinAge   time.Duration
	GCMaxShare float64
	// Quarantine is how long an address found in use on the wire stays out of allocation.
	Quarantine time.Duration
	// QuarantineLimits bound what one pool keeps in quarantine (store/quarantine.go).
	QuarantineLimits store.QuarantineLimits
	// RDMAMetrics exports the node's RDMA port counters on /metrics (rdmastats).
	RDMAMetrics bool
	// Prefetch commits a pool's next address ahead of the ADD that takes it
	// (store.PoolCommitter.Prefetch), which waits PrefetchIdle for it.
	Prefetch     bool
	PrefetchIdle time.Duration
	// CommitWindow is the release protocol's bound (zero: store.DefaultWindow); the
	// controller must run with the same.
	CommitWindow store.Window
}

// Run serves until ctx ends, then shuts down gracefully.
func Run(ctx context.Context, opts Options, log *zap.Logger) error {
	if opts.NodeName == "" {
		return errors.New("--node-name is empty: set it (or NODE_NAME) to the node this ipamd serves")
	}
	cfg, err := RESTConfig(opts.Kubeconfig, opts.QPS, opts.Burst, "underpool-ipamd/"+opts.NodeName)
	if err != nil {
		return err
	}
	scheme := runtime.NewScheme()
	if err := v1.AddToScheme(scheme); err != nil {
		return err
	}
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return err
	}
	problems := &listProblems{log: log}
	informers, err := cache.New(cfg, cache.Options{Scheme: scheme,
		// managedFields are a large part of every object and ipamd never reads them
		DefaultTransform: cache.TransformStripManagedFields(),
		// a list that fails on every retry (an Endpoint CRD the API cannot select by
		// status.node) says so in /readyz and the log, rather than waiting in silence
		DefaultWatchErrorHandler: problems.handle,
		// A node daemon caches what grows with its node, never what grows with the cluster:
		// its own pods, Endpoints (status.node is a selectable field of the CRD) and Node.
		// Anything else of another node is read by name when needed (a StatefulSet
		// predecessor's Endpoint); Endpoints of nodes that are gone are the controller's.
		ByObject: map[client.Object]cache.ByObject{
			&corev1.Pod{}:  {Field: fields.OneTermEqualSelector("spec.nodeName", opts.NodeName)},
			&v1.Endpoint{}: {Field: fields.OneTermEqualSelector("status.node", opts.NodeName)},
			&corev1.Node{}: {Field: fields.OneTermEqualSelector("metadata.name", opts.NodeName)},
		}})
	if err != nil {
		return fmt.Errorf("creating informer cache: %w", err)
	}
	for field, fn := range store.EndpointIndexers() {
		if err := informers.IndexField(ctx, &v1.Endpoint{}, field, fn); err != nil {
			return fmt.Errorf("indexing Endpoints by %s: %w", field, err)
		}
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if err := startInformers(ctx, informers, reg); err != nil {
		return err
	}
	// every write carries the window's timeout to the apiserver (the release protocol)
	writer, err := client.New(opts.CommitWindow.WriterConfig(cfg), client.Options{Scheme: scheme})
	if err != nil {
		return fmt.Errorf("creating API client: %w", err)
	}

	clientset, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("creating API client: %w", err)
	}
	broadcaster := record.NewBroadcaster()
	defer broadcaster.Shutdown()
	broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: clientset.CoreV1().Events("")})
	events := broadcaster.NewRecorder(scheme, corev1.EventSource{Component: "underpool-ipamd", Host: opts.NodeName})

	pools := store.NewPoolCommitter(writer, informers, writer, store.ReservedIPs(informers, log), log, store.NewMetrics(reg))
	pools.Window = opts.CommitWindow
	pools.Prefetch, pools.PrefetchIdle = opts.Prefetch, opts.PrefetchIdle
	if err := store.ObservePools(ctx, informers, pools); err != nil {
		return err
	}
	svc := &service.Service{
		Node:             opts.NodeName,
		Pools:            pools,
		Endpoints:        store.NewEndpoints(writer, informers, writer),
		Cluster:          cluster.New(opts.NodeName, informers, writer),
		Events:           events,
		QuarantineFor:    opts.Quarantine,
		QuarantineLimits: opts.QuarantineLimits,
		GCMinAge:         opts.GCMinAge,
		GCMaxShare:       opts.GCMaxShare,
		Log:              log,
		Metrics:          service.NewMetrics(reg),
		Window:           opts.CommitWindow,
	}
	problems.reportTo(svc.SetNotReady)
	reg.MustRegister(svc.ReadyGauge())
	if opts.RDMAMetrics {
		reg.MustRegister(rdmastats.NewCollector(rdmastats.Sysfs{Root: rdmastats.DefaultRoot}))
	}
	listener, err := server.Listen(opts.Socket, opts.SocketGroup)
	if err != nil {
		return err
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cacheDone := make(chan error, 1)
	go func() { cacheDone <- informers.Start(ctx) }()
	if opts.HealthAddress != "" {
		go serveHealth(ctx, opts.HealthAddress, reg, svc, log)
	}
	// the socket answers status at once, but refuses allocations until reconciled
	srv := &server.Server{Service: svc, Log: log, Peers: &server.Peers{Group: opts.SocketGroup}}
	serveDone := make(chan error, 1)
	go func() { serveDone <- srv.Serve(ctx, listener) }()

	log.Info("waiting for informer caches", zap.String("node", opts.NodeName))
	if !informers.WaitForCacheSync(ctx) {
		cancel()
		return errors.Join(errors.New("informer caches did not sync"), <-serveDone)
	}
	problems.synced.Store(true)
	svc.SetNotReady("reconciling this node's endpoints")
	if err := svc.Reconcile(ctx); err != nil {
		cancel()
		return errors.Join(fmt.Errorf("reconciling endpoints: %w", err), <-serveDone)
	}
	// the initial lists are garbage now; hand their memory back rather than keep it as
	// headroom a node daemon does not need
	debug.FreeOSMemory()
	log.Info("ipamd ready", zap.String("socket", opts.Socket), zap.String("node", opts.NodeName))
	if opts.GCInterval > 0 {
		go recycleLoop(ctx, svc, opts, log)
	}
	if opts.Prefetch {
		go expirePrefetched(ctx, pools)
	}

	select {
	case err = <-serveDone:
		cancel()
	case cacheErr := <-cacheDone:
		stopping := ctx.Err() != nil // asked to stop: the cache ending first is expected
		cancel()
		err = <-serveDone
		if !stopping {
			err = errors.Join(fmt.Errorf("informer cache stopped: %v", cacheErr), err)
		}
	}
	settle(svc, log, settleBound)
	log.Info("ipamd stopped")
	return err
}

// settleBound is how long a stopping ipamd waits for the frees its DELs sent after
// answering; one not made by then stays allocated, unheld, for the orphan sweeper.
const settleBound = 5 * time.Second

func settle(svc *service.Service, log *zap.Logger, bound time.Duration) {
	done := make(chan struct{})
	go func() {
		svc.Settle()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(bound):
		log.Warn("stopping with frees still in flight; the orphan sweeper frees what they did not", zap.Duration("waited", bound))
	}
}

// RESTConfig loads the API config from a kubeconfig file, or in-cluster when empty.
func RESTConfig(kubeconfig string, qps float32, burst int, userAgent string) (*rest.Config, error) {
	var cfg *rest.Config
	var err error
	if kubeconfig != "" {
		cfg, err = clientcmd.BuildConfigFromFlags("", kubeconfig)
	} else {
		cfg, err = rest.InClusterConfig()
	}
	if err != nil {
		return nil, fmt.Errorf("loading API config (--kubeconfig %q): %w", kubeconfig, err)
	}
	cfg.QPS, cfg.Burst, cfg.UserAgent = qps, burst, userAgent
	return cfg, nil
}

func serveHealth(ctx context.Context, addr string, reg *prometheus.Registry, svc *service.Service, log *zap.Logger) {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if ready, reason := svc.Ready(); !ready {
			http.Error(w, reason, http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	srv := &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Error("health endpoint failed", zap.String("address", addr), zap.Error(err))
	}
}

// expirePrefetched frees, every half PrefetchIdle, the addresses prefetched for an ADD
// that did not come (store/prefetch.go).
func expirePrefetched(ctx context.Context, pools *store.PoolCommitter) {
	idle := pools.PrefetchIdle
	if idle <= 0 {
		idle = store.DefaultPrefetchIdle
	}
	every(ctx, idle/2, func() { pools.ExpirePrefetched(ctx) })
}

// recycleLoop releases the addresses of gone pods every interval. (Orphans, addresses no
// Endpoint holds, are the elected controller's to free: see package orphans.)
func recycleLoop(ctx context.Context, svc *service.Service, opts Options, log *zap.Logger) {
	every(ctx, opts.GCInterval, func() {
		released, err := svc.Recycle(ctx, time.Now(), opts.GCGrace)
		if err != nil {
			log.Warn("recycling stopped early; next round retries", zap.Error(err))
		}
		if len(released) > 0 {
			log.Info("recycled", zap.Any("byReason", released))
		}
	})
}

// every runs round each interval, the first an interval from now, until ctx ends.
func every(ctx context.Context, interval time.Duration, round func()) {
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
			round()
		}
	}
}
