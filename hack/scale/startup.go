package main

// The --startup mode (issue 20's last target: "an ipamd with 250 pods and 1000 pools ready
// in under 2 s"): one real ipamd on a node whose 250 pods each hold one address, in 250 of
// the cluster's 1000 pools, timed from process start to /readyz answering 200, restarted
// a few times. Its start-up re-marks every address its Endpoints hold (Reconcile: one
// Remark per pool, in turn), and since an answer that needs no write rests on a fresh read
// of the pool's PoolAllocation, that is one GET per pool the node uses: the audit log
// times that stretch on its own.

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/underpool/underpool/tests/harness"
)

// startupOptions size the start-up case.
type startupOptions struct {
	pods, pools, runs int
	// poll is how often /readyz is asked: the resolution of the figure
	poll time.Duration
	// drain: after an ipamd is stopped, so its watches end (and are counted) before the
	// next run's first metrics read
	drain time.Duration
	out   string
}

func defaultStartupOptions() startupOptions {
	return startupOptions{pods: 250, pools: 1000, runs: 3, poll: 5 * time.Millisecond, drain: 2 * time.Second,
		out: filepath.Join(harness.RepoRoot(), "bench-results")}
}

const (
	// maxStartupPools: each pool is a /26 of 10.250.0.0/16 (startupSubnet)
	maxStartupPools     = 1024
	startupTarget       = 2 * time.Second
	startupNode         = "startup-node"
	startupNamespace    = "scale-startup"
	startupReadyTimeout = 5 * time.Minute
)

func (o startupOptions) validate() error {
	switch {
	case o.pools < 1 || o.pools > maxStartupPools:
		return fmt.Errorf("--startup-pools %d: must be between 1 and %d (a /26 each in 10.250.0.0/16)", o.pools, maxStartupPools)
	case o.pods < 1 || o.pods > o.pools:
		return fmt.Errorf("--startup-pods %d: must be between 1 and --startup-pools %d (each pod's address is in a pool of its own)", o.pods, o.pools)
	case o.runs < 1:
		return fmt.Errorf("--startup-runs %d: must be >= 1", o.runs)
	}
	return nil
}

func runStartupMain(o startupOptions) int {
	rep, err := runStartup(o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "scale --startup:", err)
		return 1
	}
	text := rep.markdown()
	fmt.Print("\n" + text)
	paths, err := rep.write(o.out, text)
	if err != nil {
		fmt.Fprintln(os.Stderr, "scale --startup: writing results:", err)
		return 1
	}
	say("results in %s", strings.Join(paths, " and "))
	return 0
}

// runStartup: control plane, the objects (not timed), then o.runs starts of the node's
// ipamd, each measured alone and stopped before the next.
func runStartup(o startupOptions) (*startupReport, error) {
	if err := o.validate(); err != nil {
		return nil, err
	}
	c := defaultClusterOptions()
	c.gcInterval = time.Minute // ipamd's default: no recycling round while it is measured
	e, err := startClusterEnv(c, "underpool-scale-startup-")
	if err != nil {
		return nil, err
	}
	defer e.run.stopAll()
	rep := &startupReport{Options: o.forReport(), Started: time.Now().UTC()}
	ctx := context.Background()
	setup, err := clientAs(e.cp, "underpool-scale/setup")
	if err != nil {
		return nil, err
	}
	start := time.Now()
	if err := createStartupObjects(ctx, setup, o); err != nil {
		return nil, err
	}
	rep.SetupSeconds = time.Since(start).Seconds()
	for n := 1; n <= o.runs; n++ {
		r, err := e.startupRun(ctx, o, n)
		if err != nil {
			return nil, fmt.Errorf("run %d: %w", n, err)
		}
		say("run %d: ready in %.0f ms (re-mark: %d GETs of PoolAllocations in %.0f ms), load %s",
			n, r.ReadyMs, r.RemarkGets, r.RemarkSpanMs, r.Load)
		rep.Runs = append(rep.Runs, r)
	}
	rep.Finished = time.Now().UTC()
	return rep, nil
}

// startupRun starts the node's ipamd once and measures it: wall time to ready, the
// apiserver's request counts and open watches before and at ready, CPU of ipamd, the
// apiserver and etcd meanwhile, then (once it is stopped) its own requests and the
// re-mark's span from the audit log, and its phases from its log.
func (e *clusterEnv) startupRun(ctx context.Context, o startupOptions, n int) (startupRun, error) {
	r := startupRun{Run: n, Load: loadAverage()}
	before, err := e.apiserverMetrics(ctx)
	if err != nil {
		return r, fmt.Errorf("apiserver metrics: %w", err)
	}
	apiCPU, _ := harness.ProcCPU(e.cp.APIServer.Pid())
	etcdCPU, _ := harness.ProcCPU(e.cp.Etcd.Pid())
	offset := auditOffset(e.auditLog)
	d, err := e.startIpamd(startupNode, fmt.Sprintf("run%d", n))
	if err != nil {
		return r, err
	}
	defer func() { _ = d.Stop() }()
	d.poll = o.poll
	if err := d.waitReady(ctx, startupReadyTimeout); err != nil {
		return r, err
	}
	r.ReadyMs = ms(d.readyAfter)
	// read at once: what ipamd did up to ready, before its recycling or anything after
	ipamdCPU, _ := harness.ProcCPU(d.Pid())
	apiCPUAfter, _ := harness.ProcCPU(e.cp.APIServer.Pid())
	etcdCPUAfter, _ := harness.ProcCPU(e.cp.Etcd.Pid())
	after, err := e.apiserverMetrics(ctx)
	if err != nil {
		return r, fmt.Errorf("apiserver metrics: %w", err)
	}
	r.IpamdCPUMs, r.APIServerCPUMs, r.EtcdCPUMs = ms(ipamdCPU), ms(apiCPUAfter-apiCPU), ms(etcdCPUAfter-etcdCPU)
	r.Requests = delta(requestTotals(after), requestTotals(before))
	watchesAfter, _ := apiserverWatches(after)
	watchesBefore, _ := apiserverWatches(before)
	r.Watches = delta(watchesAfter, watchesBefore)
	r.RemarkServerMs = 1000 * (requestSeconds(after, "GET", "poolallocations") - requestSeconds(before, "GET", "poolallocations"))
	if err := d.Stop(); err != nil {
		return r, err
	}
	time.Sleep(o.drain) // its watches end and its last audit events are written
	readyAt := d.started.Add(d.readyAfter)
	if err := r.fromAudit(e.auditLog, offset, d.started, readyAt); err != nil {
		return r, fmt.Errorf("audit log: %w", err)
	}
	if err := r.fromLog(d.LogPath, d.started); err != nil {
		return r, fmt.Errorf("ipamd log %s: %w", d.LogPath, err)
	}
	return r, r.check(o)
}

// check refuses a run that did not measure the case: ipamd must have reconciled every
// pod's Endpoint and address in its own pool, and found each address marked already (a
// PoolAllocation write would mean the objects were set up wrong, and time a write instead).
func (r startupRun) check(o startupOptions) error {
	if r.Reconciled.Endpoints != o.pods || r.Reconciled.Addresses != o.pods || r.Reconciled.Pools != o.pods {
		return fmt.Errorf("ipamd reconciled %d Endpoints, %d addresses in %d pools; the case has %d of each (is the node right?)",
			r.Reconciled.Endpoints, r.Reconciled.Addresses, r.Reconciled.Pools, o.pods)
	}
	for key, n := range r.Requests {
		if strings.Contains(key, "poolallocations") && !strings.HasPrefix(key, "GET ") {
			return fmt.Errorf("ipamd wrote PoolAllocations at start (%s: %.0f): an address the setup should have marked was not", key, n)
		}
	}
	return nil
}

// requestTotals is apiserver_request_total by "VERB group/resource[/sub][ code]".
func requestTotals(text string) map[string]float64 {
	out := map[string]float64{}
	for key, c := range requestsByKey(text) {
		out[key] = c.n
	}
	return out
}

// requestSeconds is apiserver_request_duration_seconds_sum for one verb and resource:
// the time the apiserver spent answering them, all added up.
func requestSeconds(text, verb, resource string) float64 {
	total := 0.0
	for _, s := range metricSamples(text, "apiserver_request_duration_seconds_sum") {
		if labelValue(s.labels, "verb") == verb && labelValue(s.labels, "resource") == resource {
			total += s.value
		}
	}
	return total
}
