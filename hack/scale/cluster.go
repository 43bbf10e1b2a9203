package main

// The --cluster mode: a simulated cluster (Node objects, pools, Endpoints, no kubelets)
// with many real ipamd processes on one control plane, to measure what one ipamd costs
// as the cluster grows: its memory, its API requests per minute, and the watch events it
// receives for churn on other nodes. See runCluster for the phases.

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/go-logr/zapr"
	"go.uber.org/zap"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/underpool/underpool/tests/harness"
)

// clusterOptions size the simulated cluster.
type clusterOptions struct {
	ipamds, nodes, endpoints, pools, churn int
	window, gcInterval                     time.Duration
	// batch ipamds start at once; reserveMiB of memory is kept free for the apiserver,
	// etcd and the rest of the machine when deciding how many ipamds fit.
	batch, reserveMiB int
	out               string
	// projectNodes is the cluster size the measured figures are projected to.
	projectNodes int
	// settle: after the last ipamd is ready, before the window (start-up lists, first
	// recycling rounds, post-ready garbage); probeSettle: after a probe ipamd is ready,
	// before its RSS is read; drain: after the window and the churn, for requests and
	// watch events in flight.
	settle, probeSettle, drain time.Duration
	// alloc sizes the allocation churn on one shared, fragmented pool (cluster_alloc*.go).
	alloc allocOptions
}

func defaultClusterOptions() clusterOptions {
	return clusterOptions{ipamds: 100, nodes: 1000, endpoints: 100000, pools: 4, churn: 1000,
		window: 2 * time.Minute, gcInterval: 10 * time.Second, batch: 4, reserveMiB: 5120,
		out: filepath.Join(harness.RepoRoot(), "bench-results"), projectNodes: 5000,
		settle: 20 * time.Second, probeSettle: 5 * time.Second, drain: 10 * time.Second, alloc: defaultAllocOptions()}
}

func (o clusterOptions) validate() error {
	switch {
	case o.nodes < 1 || o.ipamds < 1 || o.endpoints < 0 || o.pools < 1 || o.churn < 0:
		return fmt.Errorf("--nodes, --ipamds and --pools must be >= 1, --endpoints and --churn >= 0")
	case o.ipamds > o.nodes:
		return fmt.Errorf("--ipamds %d > --nodes %d: one ipamd per node", o.ipamds, o.nodes)
	case (o.endpoints+o.pools-1)/o.pools > maxPoolAddresses:
		return fmt.Errorf("--endpoints %d in %d pools: a pool holds at most %d; raise --pools", o.endpoints, o.pools, maxPoolAddresses)
	case o.pools > maxPools:
		return fmt.Errorf("--pools at most %d", maxPools)
	}
	return o.alloc.validate(o.ipamds, o.nodes)
}

// clusterEnv is one run's state.
type clusterEnv struct {
	o         clusterOptions
	work, bin string
	cp        *harness.ControlPlane
	auditLog  string
	objects   *clusterObjects
	ipamds    []*ipamdProc
	run       *stopper
}

// runCluster: (1) control plane with an audit log, Nodes, pools and Endpoints; (2) one
// ipamd on node-0 while only the ipamd nodes' Endpoints exist, then again with all of them
// (two points for the memory fit); (3) as many ipamds as fit, a steady window (RSS, requests
// by client from the audit log); (4) churn on nodes without ipamd (watch events); (5)
// allocations churning on a few ipamd nodes from one pool every ipamd watches, fragmented
// before the ipamds start (cluster_alloc*.go); report.
func runCluster(o clusterOptions) (*clusterReport, error) {
	if err := o.validate(); err != nil {
		return nil, err
	}
	e, err := startClusterEnv(o, "underpool-scale-cluster-")
	if err != nil {
		return nil, err
	}
	defer e.run.stopAll()
	rep := &clusterReport{Options: o.forReport(), Started: time.Now().UTC()}
	ctx := context.Background()
	if e.objects, err = newClusterObjects(e.cp, o); err != nil {
		return nil, err
	}

	// (1) and (2): the first point of the memory fit has only the ipamd nodes' Endpoints
	if err := e.objects.setUp(ctx, rep); err != nil {
		return nil, err
	}
	if rep.Memory.FewEndpoints.ClusterEndpoints < o.endpoints {
		if rep.Memory.FewEndpoints, err = e.probe(ctx, e.objects.created); err != nil {
			return nil, err
		}
	}
	if err := e.objects.createRest(ctx, rep); err != nil {
		return nil, err
	}
	if rep.Memory.AllEndpoints, err = e.probe(ctx, e.objects.created); err != nil {
		return nil, err
	}
	if rep.Memory.FewEndpoints.ClusterEndpoints == o.endpoints {
		rep.Memory.FewEndpoints = rep.Memory.AllEndpoints // every Endpoint is on an ipamd node: one point
	}

	if o.alloc.rate > 0 {
		if err := e.objects.setUpAllocPool(ctx, rep); err != nil {
			return nil, err
		}
	}

	// (3)
	startOffset, startFrom := auditOffset(e.auditLog), time.Now()
	if err := e.startIpamds(ctx, rep); err != nil {
		return nil, err
	}
	startTo := time.Now()
	time.Sleep(o.drain) // the last start-up requests still being answered and logged
	if rep.Startup.Requests, err = countRequests(e.auditLog, startOffset, startFrom, startTo); err != nil {
		return nil, fmt.Errorf("audit log: %w", err)
	}
	rep.Startup.Seconds = startTo.Sub(startFrom).Seconds()
	if err := e.steadyWindow(ctx, rep); err != nil {
		return nil, err
	}
	// (4)
	if err := e.churnBurst(ctx, rep); err != nil {
		return nil, err
	}
	// (5)
	if err := e.allocPhase(ctx, rep); err != nil {
		return nil, err
	}
	rep.project(o)
	rep.Finished = time.Now().UTC()
	return rep, nil
}

// startClusterEnv makes a work directory (prefix names it), builds this tree's binaries
// and starts the control plane with an audit log at level Metadata. The caller stops it
// all with e.run.stopAll(); on an error it is stopped here.
func startClusterEnv(o clusterOptions, prefix string) (e *clusterEnv, err error) {
	// the clients here log nothing worth reading; unset, controller-runtime prints a stack
	// trace after 30 s to say so
	ctrllog.SetLogger(zapr.NewLogger(zap.NewNop()))
	run, err := newStopper(prefix)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			run.stopAll()
		}
	}()
	work := run.work
	e = &clusterEnv{o: o, work: work, bin: filepath.Join(work, "bin"), run: run,
		auditLog: filepath.Join(work, "audit.log")}
	say("building underpool (ipamd of this tree)")
	if err := harness.BuildProjectBinaries(e.bin); err != nil {
		return nil, fmt.Errorf("build: %w", err)
	}
	policy := filepath.Join(work, "audit-policy.yaml")
	if err := os.WriteFile(policy, []byte(auditPolicy), 0o644); err != nil {
		return nil, err
	}
	say("starting the control plane (audit log at level Metadata)")
	e.cp, err = harness.StartControlPlane(harness.ControlPlaneOptions{AuditPolicyFile: policy, AuditLogPath: e.auditLog,
		LogDir: filepath.Join(work, "logs")})
	if err != nil {
		return nil, err
	}
	run.add(func() { _ = e.cp.Stop() })
	return e, nil
}

// probe starts one fresh ipamd on node-0, reads its memory once it is ready and settled,
// and stops it: the same moment in its life at every cluster size.
func (e *clusterEnv) probe(ctx context.Context, clusterEndpoints int) (memoryPoint, error) {
	say("probe: one ipamd on node-0 with %d Endpoints in the cluster", clusterEndpoints)
	d, err := e.startIpamd(nodeName(0), "probe")
	if err != nil {
		return memoryPoint{}, err
	}
	defer func() { _ = d.Stop() }()
	if err := d.waitReady(ctx, ipamdReadyTimeout); err != nil {
		return memoryPoint{}, err
	}
	time.Sleep(e.o.probeSettle)
	mem, err := readMemory(d.Pid())
	if err != nil {
		return memoryPoint{}, err
	}
	say("probe: VmRSS %.1f MiB, peak %.1f MiB, ready in %.1f s", kib(mem.RSS), kib(mem.HWM), d.readyAfter.Seconds())
	return memoryPoint{ClusterEndpoints: clusterEndpoints, RSSKiB: mem.RSS, PeakKiB: mem.HWM, ReadySeconds: d.readyAfter.Seconds()}, nil
}

const (
	ipamdReadyTimeout = 15 * time.Minute // a list of 100,000 Endpoints on a loaded 2-core machine
	// minFitEndpoints: the two memory points must differ by this many Endpoints for a slope
	// that is more than noise.
	minFitEndpoints = 5000
)

func kib(k int) float64 { return float64(k) / 1024 }
