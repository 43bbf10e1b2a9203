// Command ipamd is underpool's node daemon: it hands out pod addresses from IPPools over a
// unix socket to the underpool CNI plugins on its node.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/underpool/underpool/ipamd/daemon"
	"github.com/underpool/underpool/ipamd/rpc"
)

func main() {
	opts := daemon.Options{}
	var level string
	flag.StringVar(&opts.Kubeconfig, "kubeconfig", os.Getenv("KUBECONFIG"), "kubeconfig file; empty uses the in-cluster service account")
	flag.StringVar(&opts.NodeName, "node-name", os.Getenv("NODE_NAME"), "name of the node this ipamd serves (env NODE_NAME)")
	flag.StringVar(&opts.Socket, "socket", rpc.DefaultSocket, "unix socket the CNI plugins call")
	flag.StringVar(&opts.HealthAddress, "health-address", "127.0.0.1:9470", "address for /healthz, /readyz and /metrics; empty disables")
	qps := flag.Float64("api-qps", 200, "API client queries per second")
	flag.IntVar(&opts.Burst, "api-burst", 400, "API client burst")
	flag.DurationVar(&opts.GCInterval, "gc-interval", time.Minute, "how often addresses of gone pods and orphans are recycled; 0 disables")
	flag.DurationVar(&opts.GCGrace, "gc-grace", 2*time.Minute, "attachments younger than this are never recycled; also the margin past a terminating pod's grace period")
	flag.DurationVar(&opts.Quarantine, "quarantine", 10*time.Minute, "how long an address found in use on the wire stays out of allocation")
	flag.StringVar(&level, "log-level", "info", "log level: debug, info, warn, error")
	flag.Parse()
	opts.QPS = float32(*qps)

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

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := daemon.Run(ctx, opts, log); err != nil {
		log.Error("ipamd failed", zap.Error(err))
		os.Exit(1)
	}
}
