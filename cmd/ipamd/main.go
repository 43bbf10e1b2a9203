// Command ipamd is underpool's daemon. In node mode (one per node) it hands out pod
// addresses from IPPools over a unix socket to the underpool CNI plugins of its node
// (package ipamd/daemon). In controller mode (one elected per cluster) it serves the
// validating webhook and runs the cluster-wide jobs (package controller lists them).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"os/user"
	"strconv"
	"strings"
	"syscall"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/underpool/underpool/controller"
	"github.com/underpool/underpool/internal/buildinfo"
	"github.com/underpool/underpool/ipamd/daemon"
	"github.com/underpool/underpool/ipamd/store"
	"github.com/underpool/underpool/rpc"
)

func main() {
	// an own flag set: controller-runtime registers a global --kubeconfig of its own
	flag := flag.NewFlagSet("ipamd", flag.ExitOnError)
	opts := daemon.Options{}
	ctl := controller.Options{}
	var level, mode string
	var err error
	flag.StringVar(&mode, "mode", "node", "node: serve this node's CNI plugins; controller: the cluster-wide webhook and reconcilers")
	flag.StringVar(&opts.Kubeconfig, "kubeconfig", os.Getenv("KUBECONFIG"), "kubeconfig file; empty uses the in-cluster service account")
	flag.StringVar(&opts.NodeName, "node-name", os.Getenv("NODE_NAME"), "node mode: the node this ipamd serves (env NODE_NAME)")
	flag.StringVar(&opts.Socket, "socket", rpc.DefaultSocket, "node mode: unix socket the CNI plugins call")
	socketGroup := flag.String("socket-group", "", "node mode: a group (name or gid) that may use the socket besides root; empty: root only")
	flag.StringVar(&opts.HealthAddress, "health-address", "127.0.0.1:9470", "address for /healthz, /readyz (and /metrics in node mode); empty disables")
	qps := flag.Float64("api-qps", 200, "API client queries per second")
	flag.IntVar(&opts.Burst, "api-burst", 400, "API client burst")
	flag.DurationVar(&opts.GCInterval, "gc-interval", time.Minute, "node mode: how often the addresses of this node's gone pods are recycled; 0 disables")
	flag.DurationVar(&opts.GCGrace, "gc-grace", 2*time.Minute, "node mode: attachments younger than this are never recycled; also the margin past a terminating pod's grace period")
	flag.DurationVar(&opts.GCMinAge, "gc-min-age", time.Minute, "node mode: CNI GC never releases an attachment younger than this")
	flag.Float64Var(&opts.GCMaxShare, "gc-max-share", 0.5, "node mode: a CNI GC that would release more than this share (0-1) of a network's attachments on the node at once is refused unless forced; 0: no limit")
	flag.DurationVar(&opts.Quarantine, "quarantine", 10*time.Minute, "node mode: how long an address found in use on the wire stays out of allocation")
	flag.Float64Var(&opts.QuarantineLimits.MaxShare, "quarantine-max-share", 0.1, "node mode: the most of a pool's usable addresses (0-1) kept in quarantine at once, counted over the whole cluster from the pool's status; an address found in use past it is released instead, so conflicts cannot drain the pool; 0: no share limit")
	flag.IntVar(&opts.QuarantineLimits.Floor, "quarantine-floor", 4, "node mode: a pool may always keep this many addresses in quarantine, however small --quarantine-max-share makes its limit")
	flag.IntVar(&opts.QuarantineLimits.PerMAC, "quarantine-per-mac", 3, "node mode: a MAC that answers for more than this many of a pool's addresses is a spoofer or a proxy-ARP host: its answers quarantine nothing more (event ConflictSpoofer, underpool_ipamd_conflict_spoofers); 0: no limit")
	flag.BoolVar(&opts.Prefetch, "prefetch", true, "node mode: while this node keeps allocating from a pool, commit the pool's next address ahead of the ADD that takes it so an ADD makes one API write instead of two; at most one address per pool, freed a second after the last ADD, none in a pool with less than a sixteenth free")
	flag.DurationVar(&opts.PrefetchIdle, "prefetch-idle", store.DefaultPrefetchIdle, "node mode: how long a prefetched address waits for its ADD before it is freed, and how recent the last ADD from a pool must be for another to be prefetched")
	flag.BoolVar(&opts.RDMAMetrics, "rdma-metrics", false, "node mode: export the node's RDMA port counters (sysfs /sys/class/infiniband) on /metrics")
	flag.StringVar(&ctl.Webhook.Host, "webhook-host", "0.0.0.0", "controller mode: webhook listen address")
	flag.IntVar(&ctl.Webhook.Port, "webhook-port", 9443, "controller mode: webhook listen port")
	flag.StringVar(&ctl.Webhook.Endpoint.URL, "webhook-url", "", "controller mode: base URL the apiserver calls (e.g. https://127.0.0.1:9443); empty: use --webhook-service")
	webhookService := flag.String("webhook-service", "underpool-system/underpool-controller", "controller mode: namespace/name of the webhook Service (port 443)")
	flag.DurationVar(&ctl.Webhook.CertLifetime, "webhook-cert-lifetime", 30*24*time.Hour, "controller mode: how long a webhook serving certificate is valid; it is renewed in place when 2/3 of that has passed")
	flag.StringVar(&ctl.LeaderElectionNamespace, "leader-election-namespace", "underpool-system", "controller mode: namespace of the leader lease; empty disables leader election")
	flag.DurationVar(&ctl.OrphanInterval, "orphan-interval", time.Minute, "controller mode: how often pool addresses no Endpoint holds are looked for; 0 disables")
	flag.DurationVar(&ctl.OrphanGrace, "orphan-grace", 2*time.Minute, "controller mode: an address unheld this long (seen in two sweeps) is freed")
	flag.DurationVar(&ctl.RecycleInterval, "recycle-interval", time.Minute, "controller mode: how often the addresses of gone pods are recycled on nodes no ipamd looks after (no Node object, the out-of-service taint, not Ready for longer than --recycle-grace; each ipamd recycles only its own node's); 0 disables")
	flag.DurationVar(&ctl.CountsInterval, "counts-interval", controller.DefaultCountsInterval, "controller mode: a pool's status (the counts shown from its PoolAllocation, its conditions) is written at most once per this interval; every such write is an event on every node")
	flag.DurationVar(&ctl.RecycleGrace, "recycle-grace", 2*time.Minute, "controller mode: attachments younger than this are never recycled")
	flag.StringVar(&ctl.MetricsAddress, "metrics-address", "", "controller mode: address for /metrics (e.g. underpool_pools_overlapping); empty disables")
	window := flag.Duration("commit-window", time.Duration(store.DefaultWindow), "both modes: the release protocol's bound (docs/design.md): a write that depends on a moment-old read is sent within half of it, and the orphan sweeper spaces its phases by all of it; must be the same on every ipamd and the controller")
	flag.StringVar(&level, "log-level", "info", "log level: debug, info, warn, error")
	showVersion := flag.Bool("version", false, "print the version and exit")
	_ = flag.Parse(os.Args[1:])
	if *showVersion {
		fmt.Println(buildinfo.String("ipamd"))
		return
	}
	opts.QPS = float32(*qps)
	if *window < 4*time.Second {
		fmt.Fprintf(os.Stderr, "--commit-window %v: want at least 4s (a quarter of it is every write's timeout)\n", *window)
		os.Exit(2)
	}
	opts.CommitWindow, ctl.CommitWindow = store.Window(*window), store.Window(*window)
	if opts.PrefetchIdle <= 0 || opts.PrefetchIdle > opts.CommitWindow.WriteTimeout() {
		fmt.Fprintf(os.Stderr, "--prefetch-idle %v: want more than 0 and at most a quarter of --commit-window (%v): an ADD may take a prefetched address only that long after its commit\n",
			opts.PrefetchIdle, opts.CommitWindow.WriteTimeout())
		os.Exit(2)
	}
	if opts.SocketGroup, err = lookupGroup(*socketGroup); err != nil {
		fmt.Fprintf(os.Stderr, "--socket-group %q: %v\n", *socketGroup, err)
		os.Exit(2)
	}
	if opts.GCMaxShare < 0 || opts.GCMaxShare > 1 {
		fmt.Fprintf(os.Stderr, "--gc-max-share %v: want a share between 0 and 1\n", opts.GCMaxShare)
		os.Exit(2)
	}
	if q := opts.QuarantineLimits; q.MaxShare < 0 || q.MaxShare > 1 || q.Floor < 0 || q.PerMAC < 0 {
		fmt.Fprintf(os.Stderr, "--quarantine-max-share %v, --quarantine-floor %d, --quarantine-per-mac %d: want a share between 0 and 1 and counts of 0 or more\n",
			q.MaxShare, q.Floor, q.PerMAC)
		os.Exit(2)
	}
	ctl.HealthAddress = opts.HealthAddress
	ctl.Registry = metrics.Registry // served by the manager on --metrics-address
	if ns, name, ok := strings.Cut(*webhookService, "/"); ok && ns != "" && name != "" {
		ctl.Webhook.Endpoint.ServiceNamespace, ctl.Webhook.Endpoint.Service, ctl.Webhook.Endpoint.ServicePort = ns, name, 443
	}

	lvl, err := zapcore.ParseLevel(level)
	if err != nil {
		fmt.Fprintf(os.Stderr, "--log-level %q: %v\n", level, err)
		os.Exit(2)
	}
	cfg := zap.NewProductionConfig()
	cfg.Level = zap.NewAtomicLevelAt(lvl)
	log, err := cfg.Build()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer log.Sync() //nolint:errcheck

	log.Info("ipamd starting", zap.String("mode", mode), zap.String("version", buildinfo.Get()))

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	switch mode {
	case "node":
		err = daemon.Run(ctx, opts, log)
	case "controller":
		restCfg, cerr := daemon.RESTConfig(opts.Kubeconfig, opts.QPS, opts.Burst, "underpool-controller")
		if cerr != nil {
			err = cerr
			break
		}
		err = controller.Run(ctx, restCfg, ctl, log)
	default:
		fmt.Fprintf(os.Stderr, "--mode %q: want node or controller\n", mode)
		os.Exit(2)
	}
	if err != nil {
		log.Error("ipamd failed", zap.String("mode", mode), zap.Error(err))
		os.Exit(1)
	}
}

// lookupGroup resolves a group name or numeric gid; empty means none (-1).
func lookupGroup(name string) (int, error) {
	if name == "" {
		return -1, nil
	}
	if gid, err := strconv.Atoi(name); err == nil && gid >= 0 {
		return gid, nil
	}
	g, err := user.LookupGroup(name)
	if err != nil {
		return -1, err
	}
	return strconv.Atoi(g.Gid)
}
