// Command scale runs underpool's scale cases on a local control plane and reports them:
//
//   - the hard case from Spiderpool's published test: as many pods as the pool has
//     addresses (1000 into a pool of exactly 1000), arriving at once from 10 nodes, each
//     with its own ipamd: every pod must get an address, none twice, none fail; then all
//     are deleted and the pool must be empty;
//   - ipamd's memory with 10,000 Endpoints on its node (target: RSS < 64 MiB).
//
// Allocations go through the underpool-ipam binary exactly as a main plugin calls its
// IPAM plugin (network config on stdin), with no link: this measures the IPAM path.
//
//	go run ./hack/scale [--nodes 10 --pods 1000 --inflight 200 --endpoints 10000]
//
// With --cluster it runs a simulated cluster instead (cluster*.go): many ipamds on one
// control plane, thousands of Node objects and Endpoints, measuring each ipamd's memory,
// its API requests per minute (audit log) and the watch events churn elsewhere costs it:
//
//	go run ./hack/scale --cluster [--ipamds 100 --nodes 1000 --endpoints 100000 --pools 4 --churn 1000]
//	    [--alloc-rate 20 --alloc-window 1m --alloc-ipamds 10 --alloc-inflight 40 --alloc-pool-size 4096]
//
// The last phase churns allocations (ADD then DEL through the underpool-ipam binary) on a
// few ipamd nodes from one fragmented pool that every ipamd watches, and reports what it
// costs the other ipamds, the apiserver and the allocating nodes (issue 20's "before").
//
// With --startup it runs only the start-up case (startup*.go): one ipamd on a node with 250
// pods whose addresses are in 250 of the cluster's 1000 pools, timed from process start to
// ready, 3 times:
//
//	go run ./hack/scale --startup [--startup-pods 250 --startup-pools 1000 --startup-runs 3]
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/underpool/underpool/tests/harness"
)

type options struct {
	nodes, pods, inflight, endpoints int
	out                              string
}

func main() {
	o := options{}
	fs := flag.NewFlagSet("scale", flag.ExitOnError)
	fs.IntVar(&o.nodes, "nodes", 10, "simulated nodes, one ipamd each")
	fs.IntVar(&o.pods, "pods", 1000, "pods in the hard case; the pool has exactly this many addresses")
	fs.IntVar(&o.inflight, "inflight", 200, "IPAM plugin processes running at once (the rest queue, as kubelets do)")
	fs.IntVar(&o.endpoints, "endpoints", 10000, "Endpoints on one node for the memory case (0 skips it)")
	fs.StringVar(&o.out, "out", filepath.Join(harness.RepoRoot(), "bench-results"), "directory for the markdown results")
	cluster := fs.Bool("cluster", false, "run the simulated cluster instead of the hard and memory cases")
	c := defaultClusterOptions()
	fs.IntVar(&c.ipamds, "ipamds", c.ipamds, "--cluster: ipamd processes (as many as memory allows), on node-0, node-1, ...")
	fs.IntVar(&c.pools, "pools", c.pools, "--cluster: IPPools the Endpoints' addresses come from")
	fs.IntVar(&c.churn, "churn", c.churn, "--cluster: pods (with Endpoints) created and deleted on nodes without ipamd; 0 skips")
	fs.DurationVar(&c.window, "window", c.window, "--cluster: steady measuring window")
	fs.DurationVar(&c.gcInterval, "gc-interval", c.gcInterval, "--cluster: ipamd --gc-interval (recycling rounds)")
	fs.IntVar(&c.batch, "batch", c.batch, "--cluster: ipamds started at once")
	fs.IntVar(&c.reserveMiB, "reserve-mib", c.reserveMiB, "--cluster: memory kept free for the control plane when deciding how many ipamds fit")
	fs.IntVar(&c.projectNodes, "project-nodes", c.projectNodes, "--cluster: cluster size the figures are projected to")
	fs.Float64Var(&c.alloc.rate, "alloc-rate", c.alloc.rate, "--cluster: allocations (ADD then DEL of a pod) started per second on the allocating ipamds together; 0 skips the phase")
	fs.DurationVar(&c.alloc.window, "alloc-window", c.alloc.window, "--cluster: how long allocations are started for")
	fs.IntVar(&c.alloc.ipamds, "alloc-ipamds", c.alloc.ipamds, "--cluster: ipamds that allocate (the first ones); the others only watch")
	fs.IntVar(&c.alloc.inflight, "alloc-inflight", c.alloc.inflight, "--cluster: plugin processes running at once in the allocation churn")
	fs.IntVar(&c.alloc.poolSize, "alloc-pool-size", c.alloc.poolSize, "--cluster: addresses in the shared allocation pool; every other one is held before the run")
	startup := fs.Bool("startup", false, "run only the start-up case: one ipamd on a node with --startup-pods pods in --startup-pools pools, timed to ready")
	st := defaultStartupOptions()
	fs.IntVar(&st.pods, "startup-pods", st.pods, "--startup: pods on the node, each holding one address in a pool of its own")
	fs.IntVar(&st.pools, "startup-pools", st.pools, "--startup: pools in the cluster (at most 1024, a /26 each in 10.250.0.0/16)")
	fs.IntVar(&st.runs, "startup-runs", st.runs, "--startup: ipamd starts measured, one after another")
	_ = fs.Parse(os.Args[1:])
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "scale: needs root (it starts ipamd sockets under a temp dir and execs CNI plugins)")
		os.Exit(2)
	}
	if o.pods > 4000 || o.pods < 1 {
		fmt.Fprintln(os.Stderr, "scale: --pods must be between 1 and 4000 (the pool lives in 10.250.208.0/20)")
		os.Exit(2)
	}
	if *startup {
		fs.Visit(func(f *flag.Flag) {
			if f.Name == "out" {
				st.out = o.out
			}
		})
		os.Exit(runStartupMain(st))
	}
	if *cluster {
		// --nodes, --endpoints and --out are shared with the default mode, whose defaults differ
		fs.Visit(func(f *flag.Flag) {
			switch f.Name {
			case "nodes":
				c.nodes = o.nodes
			case "endpoints":
				c.endpoints = o.endpoints
			case "out":
				c.out = o.out
			}
		})
		os.Exit(runClusterMain(c))
	}
	os.Exit(run(o))
}

func runClusterMain(c clusterOptions) int {
	rep, err := runCluster(c)
	if err != nil {
		fmt.Fprintln(os.Stderr, "scale --cluster:", err)
		return 1
	}
	text := rep.markdown(c)
	fmt.Print("\n" + text)
	paths, err := rep.write(c.out, text)
	if err != nil {
		fmt.Fprintln(os.Stderr, "scale --cluster: writing results:", err)
		return 1
	}
	say("results in %s", strings.Join(paths, " and "))
	return 0
}

func run(o options) int {
	run, err := newStopper("underpool-scale-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer run.stopAll()
	work := run.work
	fail := func(what string, err error) int {
		fmt.Fprintf(os.Stderr, "scale: %s: %v (logs in %s are removed on exit)\n", what, err, work)
		return 1
	}

	say("building underpool and the control plane tools")
	if err := harness.EnsureTools("controlplane", "kube-apiserver", "etcd"); err != nil {
		return fail("tools", err)
	}
	bin := filepath.Join(work, "bin")
	if err := harness.BuildProjectBinaries(bin); err != nil {
		return fail("build", err)
	}
	say("starting the control plane")
	cp, err := harness.StartControlPlane(harness.ControlPlaneOptions{})
	if err != nil {
		return fail("control plane", err)
	}
	run.add(func() { _ = cp.Stop() })
	env := &env{o: o, work: work, bin: bin, cp: cp}
	if env.kube, err = cp.Client(v1AddToScheme); err != nil {
		return fail("client", err)
	}

	var report []string
	report = append(report, fmt.Sprintf("# underpool scale run %s\n", time.Now().UTC().Format(time.RFC3339)))
	hard, err := env.hardCase(context.Background(), run)
	if err != nil {
		return fail("hard case", err)
	}
	report = append(report, hard...)
	if o.endpoints > 0 {
		mem, err := env.memoryCase(context.Background(), run)
		if err != nil {
			return fail("memory case", err)
		}
		report = append(report, mem...)
	}
	text := strings.Join(report, "\n") + "\n"
	fmt.Print("\n" + text)
	if err := os.MkdirAll(o.out, 0o755); err == nil {
		path := filepath.Join(o.out, "scale-"+time.Now().UTC().Format("20060102-150405")+".md")
		if os.WriteFile(path, []byte(text), 0o644) == nil {
			say("results in %s", path)
		}
	}
	if strings.Contains(text, "FAILED") {
		return 1
	}
	return 0
}

func say(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}
