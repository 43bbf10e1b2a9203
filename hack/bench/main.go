// Command bench compares underpool with host-local and whereabouts IPAM in one run on
// one local control plane: real macvlan links in real network namespaces, driven
// through libcni as a container runtime drives them. Every plugin runs inside a netns
// standing for the node, with its own uplink, so underpool runs with its defaults (host
// veth, policy routing, ARP probe). For each IPAM and parallelism it
// ADDs then DELs N pods, times every operation, counts what the IPAM still holds
// afterwards (a silent leak must show), prints a table and the ratios the project
// targets, and writes JSON and markdown results.
//
//	make bench                              # build, tools, then go run ./hack/bench
//	go run ./hack/bench --pods 200 --parallel 1,8,16 --ipams underpool,host-local
//	go run ./hack/bench --density 250    # density curve up to 250 pods (0: none)
//	go run ./hack/bench --pods 1000 --parallel 40 --pool-size 1000 --density 0   # issue 11's hard case
//	go run ./hack/bench --ipams underpool-ipam,host-local-ipam   # the IPAM path alone
//
// Each phase also reports the API requests per pod (the apiserver's own count) and the
// CPU ms per pod of the plugin processes, ipamd, kube-apiserver and etcd, and the plugin
// logs are searched for "netlink call interrupted" after each IPAM.
//
// The density curve ADDs --density pods one at a time to the one node and reports the
// median ADD latency around the 1st, 10th, 110th, 250th and last pod, and how much
// the last window costs over the 10th's (issue 11's target for underpool: <= 1.2x).
//
// Needs root: namespaces, links and CNI plugins need CAP_SYS_ADMIN and CAP_NET_ADMIN.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/tests/harness"
	"github.com/underpool/underpool/tests/harness/kubelet"
)

// The IPAM names, in the order they run and are reported.
const (
	ipamUnderpool = "underpool"
	// ipamUnderpoolNoChecks is underpool with the underlay checks off: the gap to
	// underpool is what the checks cost.
	ipamUnderpoolNoChecks = "underpool-nochecks"
	ipamHostLocal         = "host-local"
	ipamWhereabouts       = "whereabouts"
	// The IPAM path alone (issue 11's "IPAM only" row): each IPAM binary runs as the
	// main plugin, netconf on stdin, and makes no link.
	ipamUnderpoolIPAM   = "underpool-ipam"
	ipamHostLocalIPAM   = "host-local-ipam"
	ipamWhereaboutsIPAM = "whereabouts-ipam"
)

// defaultDensity is --density's default. The full 1000 (--density 1000) takes about
// 10 minutes on a 2-core machine, most of it whereabouts (~6 min for 1000 ADDs and
// DELs) and underpool's ARP probe (~2.5 min): too long for every make bench.
const defaultDensity = 500

var allIPAMs = []string{ipamUnderpool, ipamUnderpoolNoChecks, ipamHostLocal, ipamWhereabouts,
	ipamUnderpoolIPAM, ipamHostLocalIPAM, ipamWhereaboutsIPAM}

type options struct {
	pods      int
	parallel  []int
	ipams     []string
	out       string
	binDir    string
	opTimeout time.Duration
	keepLogs  bool
	density   int
	poolSize  int
}

func parseFlags(args []string) (*options, error) {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	o := &options{}
	parallel := fs.String("parallel", "1,16", "comma-separated parallelism levels (CNI calls in flight)")
	ipams := fs.String("ipams", strings.Join(allIPAMs, ","), "comma-separated IPAMs to compare")
	fs.IntVar(&o.pods, "pods", 100, "pods to ADD then DEL per IPAM and parallelism")
	fs.StringVar(&o.out, "out", filepath.Join(harness.RepoRoot(), "bench-results"), "directory for the JSON and markdown results")
	fs.StringVar(&o.binDir, "bin", "", "directory with prebuilt ipamd and underpool binaries (default: build them fresh, so a stale ./bin is never measured)")
	fs.DurationVar(&o.opTimeout, "op-timeout", 2*time.Minute, "bound on one CNI call; a call hitting it counts as a failure")
	fs.IntVar(&o.density, "density", defaultDensity, "pods ADDed one at a time to one node per IPAM for the density curve, after the parallel runs (0: no density curve)")
	fs.IntVar(&o.poolSize, "pool-size", 0, "addresses in each IPAM's pool (0: a block of twice the pods); --pool-size equal to --pods is the hard case of a pool filled to the last address")
	fs.BoolVar(&o.keepLogs, "keep-logs", false, "keep the work directory (plugin, ipamd, apiserver logs) even when everything succeeded")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if o.pods < 1 {
		return nil, fmt.Errorf("--pods must be at least 1")
	}
	if o.density < 0 {
		return nil, fmt.Errorf("--density must be 0 (off) or a number of pods")
	}
	if o.poolSize != 0 && o.poolSize < max(o.pods, o.density) {
		return nil, fmt.Errorf("--pool-size %d holds fewer addresses than --pods or --density ask for", o.poolSize)
	}
	for _, f := range strings.Split(*parallel, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("--parallel: %q is not a positive number", f)
		}
		if !slices.Contains(o.parallel, n) {
			o.parallel = append(o.parallel, n)
		}
	}
	for _, f := range strings.Split(*ipams, ",") {
		name := strings.TrimSpace(f)
		if !slices.Contains(allIPAMs, name) {
			return nil, fmt.Errorf("--ipams: unknown IPAM %q (known: %s)", name, strings.Join(allIPAMs, ", "))
		}
		if !slices.Contains(o.ipams, name) {
			o.ipams = append(o.ipams, name)
		}
	}
	// Run in the canonical order whatever the flag's order, so reports compare.
	slices.SortFunc(o.ipams, func(a, b string) int { return slices.Index(allIPAMs, a) - slices.Index(allIPAMs, b) })
	return o, nil
}

func main() {
	opts, err := parseFlags(os.Args[1:])
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(2)
	}
	os.Exit(run(opts))
}

// cleanups is a LIFO stack run once, from the normal exit path and from
// StopOnInterrupt alike, so Ctrl-C leaves no namespace, link or daemon behind.
type cleanups struct {
	mu   sync.Mutex
	fns  []func()
	ran  bool
	once sync.Once
}

// push registers fn, or runs it at once when the stack already ran: something
// created while an interrupt was being handled is torn down rather than leaked.
func (c *cleanups) push(fn func()) {
	c.mu.Lock()
	if c.ran {
		c.mu.Unlock()
		fn()
		return
	}
	c.fns = append(c.fns, fn)
	c.mu.Unlock()
}

func (c *cleanups) run() {
	c.once.Do(func() {
		c.mu.Lock()
		fns := c.fns
		c.fns, c.ran = nil, true
		c.mu.Unlock()
		for i := len(fns) - 1; i >= 0; i-- {
			fns[i]()
		}
	})
}

// interrupted is set when Ctrl-C (SIGINT/SIGTERM) started the cleanup.
var interrupted atomic.Bool

func run(opts *options) int {
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "bench: needs root (network namespaces, links and CNI plugins need CAP_SYS_ADMIN/CAP_NET_ADMIN)")
		return 2
	}
	subnets, err := planSubnets(max(opts.pods, opts.density), opts.poolSize)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 2
	}
	var cl cleanups
	harness.StopOnInterrupt(cl.run)
	// Registered later, so it runs before cl.run: an interrupted run removes its
	// logs like a successful one (nobody asked to debug it).
	harness.StopOnInterrupt(func() { interrupted.Store(true) })
	defer cl.run()

	rep, err := benchmark(opts, subnets, &cl)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 1
	}
	rep.print(os.Stdout)
	paths, err := rep.write(opts.out)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench: writing results:", err)
		return 1
	}
	fmt.Fprintf(os.Stderr, "bench: results in %s\n", strings.Join(paths, " and "))
	if problems := rep.problems(); len(problems) > 0 {
		for _, p := range problems {
			fmt.Fprintln(os.Stderr, "bench: FAILED:", p)
		}
		return 1
	}
	return 0
}

// benchmark sets up the shared pieces (control plane, ipamd, parent link), then runs
// every IPAM at every parallelism. Everything it starts is pushed onto cl.
func benchmark(opts *options, subnets map[string]subnetPlan, cl *cleanups) (*report, error) {
	if err := harness.EnsureTools("all", "kube-apiserver", "etcd", "macvlan", "host-local", "whereabouts"); err != nil {
		return nil, err
	}
	work, err := os.MkdirTemp("", "underpool-bench-")
	if err != nil {
		return nil, err
	}
	// The work dir holds the logs; keep it when something failed so there is
	// something to read (pushed first, so it runs after every process stopped).
	var succeeded atomic.Bool // read by the interrupt handler's goroutine too
	cl.push(func() {
		if opts.keepLogs || (!succeeded.Load() && !interrupted.Load()) {
			fmt.Fprintf(os.Stderr, "bench: logs kept in %s\n", work)
			return
		}
		os.RemoveAll(work)
	})

	binDir := opts.binDir
	if binDir == "" {
		binDir = filepath.Join(work, "bin")
		progress("building ipamd and the underpool plugins into %s", binDir)
		if err := harness.BuildProjectBinaries(binDir); err != nil {
			return nil, err
		}
	}

	progress("starting etcd and kube-apiserver")
	cp, err := harness.StartControlPlane(harness.ControlPlaneOptions{
		CRDPaths: []string{filepath.Join(harness.CacheDir(), "whereabouts-crds")},
		LogDir:   filepath.Join(work, "logs"),
	})
	if err != nil {
		return nil, err
	}
	cl.push(func() { _ = cp.Stop() })
	kube, err := cp.Client(v1.AddToScheme)
	if err != nil {
		return nil, err
	}

	// Every plugin runs in a netns standing for the node, with its own uplink (the
	// macvlan parent): underpool's defaults add host veths, routes and rules there.
	progress("making the node netns and its uplink")
	node, err := newNodeNetNS(cp.Config.Host, cl)
	if err != nil {
		return nil, err
	}

	api, err := newAPICounter(cp.Config)
	if err != nil {
		return nil, err
	}
	cpu := &cpuMeter{daemons: map[string]int{"kube-apiserver": cp.APIServer.Pid(), "etcd": cp.Etcd.Pid()}}
	env := &setupEnv{work: work, kube: kube, kubeconfig: cp.KubeconfigPath, master: node.parent(), api: api, cpu: cpu}
	if err := ensureNode(context.Background(), kube); err != nil {
		return nil, fmt.Errorf("register node %s: %w", benchNode, err)
	}
	if slices.ContainsFunc(opts.ipams, func(n string) bool { return strings.HasPrefix(n, ipamUnderpool) }) {
		progress("starting ipamd")
		d, err := harness.StartIpamd(harness.DefaultIpamdOptions(binDir, cp.KubeconfigPath, benchNode, work))
		if err != nil {
			return nil, err
		}
		cl.push(func() { _ = d.Stop() })
		env.ipamdSocket = d.Options.Socket
		cpu.daemons["ipamd"] = d.Pid()
	}

	// Plugins write diagnostics on stderr; keep them out of the progress output.
	pluginLog, err := os.Create(filepath.Join(work, "plugins-stderr.log"))
	if err != nil {
		return nil, err
	}
	cl.push(func() { pluginLog.Close() })
	cni := &harness.CNI{
		BinDirs:   []string{binDir, harness.CacheBinDir()},
		CacheDir:  filepath.Join(work, "cni-cache"),
		NodeNetNS: node.ns.Path(),
		Stderr:    pluginLog,
		// node settings, as the runtime's environment gives them: logs under work,
		// this node's ipamd
		Env: []string{kubelet.LogDirEnv + "=" + work, kubelet.IpamdSocketEnv + "=" + env.ipamdSocket},
	}

	// Namespaces of the run in progress: closed after each DEL phase, and by the
	// interrupt cleanup if Ctrl-C lands mid-run.
	live := &netnsSet{}
	cl.push(live.closeAll)
	// Pushed last, so it runs first: no namespace or daemon goes while a call uses it.
	gate := newCallGate()
	cl.push(func() { gate.close(30 * time.Second) })

	rep := newReport(opts)
	ctx := context.Background()
	for _, name := range opts.ipams {
		ip, err := setup(ctx, name, env, subnets[name])
		if err != nil {
			return nil, fmt.Errorf("%s setup: %w", name, err)
		}
		logsFrom := logSizes(work)
		for _, par := range opts.parallel {
			add, del, err := runOnce(ctx, env, cni, ip, opts, par, live, gate)
			if err != nil {
				return nil, err
			}
			held, detail, err := heldSettled(ctx, ip, 0)
			if err != nil {
				return nil, fmt.Errorf("%s: counting what it still holds: %w", name, err)
			}
			del.Held, del.HeldDetail = &held, detail
			rep.add(add, del)
			if held > 0 {
				progress("%s: still holds %d addresses after DEL (%s)", name, held, detail)
			}
		}
		if opts.density > 0 && !ipamOnly(name) {
			d, err := runDensity(ctx, env, cni, ip, opts, live, gate)
			if err != nil {
				return nil, fmt.Errorf("%s density: %w", name, err)
			}
			rep.Density = append(rep.Density, d)
			rep.Leftovers[name] = *d.Held
		}
		// issue 11: concurrent ADDs interrupted the plugins' netlink dumps; count the
		// retries given up on that this contestant's runs left in the plugin logs
		n, sample, err := countInLogs(work, logsFrom, interruptedDump)
		if err != nil {
			return nil, err
		}
		rep.Interrupted[name] = n
		if n > 0 {
			progress("%s: %d %q lines in the plugin logs, e.g. %s", name, n, interruptedDump, sample)
		}
	}
	rep.finish()
	succeeded.Store(len(rep.problems()) == 0)
	return rep, nil
}

// progress reports to stderr, leaving stdout to the result table.
func progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}
