// Command demo shows underpool the way a cluster uses it, with real parts only: a local
// etcd + kube-apiserver with the real kube-controller-manager and kube-scheduler, two
// simulated nodes (each its own ipamd and a kubelet stand-in that runs CNI through the
// real multus thin plugin in real network namespaces), one IPPool and one
// NetworkAttachmentDefinition (underpool over macvlan). A Deployment and a StatefulSet
// then get underlay addresses on net1, pods on different nodes ping each other, a
// rolling restart of the StatefulSet keeps every pod's address, and deleting both
// workloads gives every address back.
//
//	go run ./hack/demo [--keep]     (as root; `make demo` builds what it needs first)
//
// Everything it creates is removed at the end, on error and on Ctrl-C; --keep leaves it
// running until Ctrl-C so you can look around with kubectl and `ip netns exec`.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/tests/harness"
)

const (
	namespace   = "default"
	nadName     = "underlay"
	poolName    = "demo-v4"
	poolSubnet  = "10.250.100.0/24"
	poolRange   = "10.250.100.10-10.250.100.99"
	poolGateway = "10.250.100.1"

	deployName = "api"
	stsName    = "web"
	demoLabel  = "underpool.io/demo" // on every demo pod, to list them together

	// networksAnnotation is the multus annotation naming the networks a pod wants.
	networksAnnotation = "k8s.v1.cni.cncf.io/networks"
)

var (
	nodeNames      = []string{"node-a", "node-b"}
	deployReplicas = int32(2)
	stsReplicas    = int32(3)
)

func main() {
	keep := flag.Bool("keep", false, "keep everything running until Ctrl-C and print how to look around")
	flag.Parse()
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "demo: needs root (network namespaces, links and CNI plugins need CAP_NET_ADMIN/CAP_SYS_ADMIN); run it with sudo")
		os.Exit(1)
	}
	start := time.Now()
	d := &demo{keep: *keep}
	// Armed before anything exists, so a Ctrl-C at any point undoes exactly what was made.
	harness.StopOnInterrupt(func() {
		muted.Store(true) // the steps in flight go on failing; only cleanup speaks now
		if err := d.undo.run(); err != nil {
			fmt.Fprintf(os.Stderr, "cleanup: %v\n", err)
		}
	})

	// A terminal's Ctrl-C also reaches the plugin binaries we are running (same process
	// group), so the step in flight fails: that is the interrupt's doing, not a failure to
	// report. Notice the signal here too; StopOnInterrupt does the cleanup and the exit.
	var interrupted atomic.Bool
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() { <-sigs; interrupted.Store(true) }()

	err := d.run()
	if interrupted.Load() || errors.Is(err, errCleanedUp) {
		select {} // StopOnInterrupt is cleaning up and exits with 130
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "\ndemo FAILED: %v\n", err)
		// A step that broke usually says why in some log, and the logs go with the temp
		// dir: show their ends first. Failed checks carry their own reasons.
		var checks checkFailures
		if !errors.As(err, &checks) {
			d.printLogTails()
		}
	}
	say("cleaning up ...")
	if cerr := d.undo.run(); cerr != nil {
		fmt.Fprintf(os.Stderr, "cleanup: %v\n", cerr)
		err = errors.Join(err, cerr)
	}
	if err != nil {
		os.Exit(1)
	}
	sayf("done in %s: %d pods on %d nodes got underlay addresses and reached each other across nodes, the StatefulSet's pods kept theirs across a rolling restart, and every address went back to the pool",
		time.Since(start).Round(time.Second), deployReplicas+stsReplicas, len(nodeNames))
}

// demo is the state of one run; undo holds how to take each piece down again.
type demo struct {
	keep bool
	undo undoStack

	tmp    string     // everything on disk: logs, sockets, CNI caches
	files  []*os.File // logs written by the demo's pieces, closed with tmp
	binDir string     // ipamd, underpool, underpool-ipam
	cp     *harness.ControlPlane
	c      client.Client
	parent string // macvlan parent: end A of a throw-away veth pair, shared by both nodes
	nodes  []*simNode

	failures      []string // non-fatal problems (a failed ping) reported at the end
	saidNoKubectl bool
}

func (d *demo) run() error {
	err := d.undo.build(func() (err error) {
		if d.tmp, err = os.MkdirTemp("", "underpool-demo-"); err != nil {
			return err
		}
		d.undo.push("temp dir "+d.tmp, func() error {
			for _, f := range d.files {
				f.Close()
			}
			return os.RemoveAll(d.tmp)
		})
		return nil
	})
	if err != nil {
		return err
	}

	say("locating binaries ...")
	if d.binDir, err = projectBinaries(d.tmp); err != nil {
		return err
	}
	// the same list as DEMO_TOOLS in tests/tools/build.sh, whose demo target builds them
	peers := []string{"kube-apiserver", "etcd", "kube-controller-manager", "kube-scheduler", "multus", "macvlan", "loopback"}
	if err := harness.EnsureTools("demo", peers...); err != nil {
		return err
	}
	info("%s from %s", strings.Join(peers, ", "), harness.CacheBinDir())

	say("starting a local control plane on 127.0.0.1: etcd, kube-apiserver, kube-controller-manager, kube-scheduler ...")
	err = d.undo.build(func() (err error) {
		d.cp, err = harness.StartControlPlane(harness.ControlPlaneOptions{Lifecycle: true, LogDir: filepath.Join(d.tmp, "control-plane")})
		if err == nil {
			d.undo.push("control plane (kube-scheduler, kube-controller-manager, kube-apiserver, etcd)", d.cp.Stop)
		}
		return err
	})
	if err != nil {
		return err
	}
	info("API server %s; CRDs: %s", d.cp.Config.Host, installedKinds())
	if d.c, err = d.cp.Client(v1.AddToScheme); err != nil {
		return err
	}

	sayf("creating IPPool %s: %s, handing out %s, gateway %s ...", poolName, poolSubnet, poolRange, poolGateway)
	if err := d.createPool(); err != nil {
		return err
	}

	say("creating a throw-away veth pair as the nodes' shared uplink (the macvlan parent: one L2 segment) ...")
	var veth *harness.Veth
	err = d.undo.build(func() (err error) {
		veth, err = harness.NewVethPair(harness.UniqueName("demo"), harness.UniqueName("demo"))
		if err == nil {
			d.undo.push("veth "+veth.A+"/"+veth.B, veth.Close)
		}
		return err
	})
	if err != nil {
		return err
	}
	d.parent = veth.A
	info("parent %s (peer %s)", veth.A, veth.B)

	sayf("creating NetworkAttachmentDefinition %s/%s: underpool over macvlan (bridge) on %s, pool %s ...", namespace, nadName, d.parent, poolName)
	if err := d.createNAD(); err != nil {
		return err
	}

	sayf("starting %d simulated nodes, each with its own ipamd and a kubelet stand-in (sandboxes = netns, CNI through multus) ...", len(nodeNames))
	for _, name := range nodeNames {
		var n *simNode
		err := d.undo.build(func() (err error) {
			n, err = d.startNode(name)
			return err
		})
		if err != nil {
			return err
		}
		d.nodes = append(d.nodes, n)
		info("%s: ipamd pid %d on %s; Node registered and Ready", name, n.ipamd.Pid(), n.ipamd.Options.Socket)
	}

	sayf("creating Deployment %s (%d replicas) and StatefulSet %s (%d replicas), pods asking for %s as net1 ...",
		deployName, deployReplicas, stsName, stsReplicas, nadName)
	info("the scheduler spreads them over the nodes; each node's kubelet stand-in runs CNI ADD: multus -> underpool -> its ipamd")
	t0 := time.Now()
	if err := d.createWorkloads(); err != nil {
		return err
	}
	before, err := d.waitAllReady(2*time.Minute, nil)
	if err != nil {
		return err
	}
	info("%d pods Ready after %s", len(before), time.Since(t0).Round(100*time.Millisecond))

	say("pods and their net1 address: as ipamd recorded it (Endpoint) and as the kernel has it inside the pod's netns:")
	d.printPods(before)

	say("ping across nodes over the shared macvlan parent (from inside one pod's netns to another's address):")
	d.pingAcrossNodes(before)

	say("kubectl get ippools,poolallocations,endpoints.underpool.io (a pool's allocation state is its PoolAllocation; the IPPool shows its counts as the controller last copied them):")
	d.kubectlGet("ippools", "/apis/underpool.io/v1/ippools")
	d.kubectlGet("poolallocations", "/apis/underpool.io/v1/poolallocations")
	d.kubectlGet("endpoints.underpool.io", "/apis/underpool.io/v1/namespaces/"+namespace+"/endpoints")

	sayf("rolling restart of StatefulSet %s (as `kubectl rollout restart`: a new restartedAt annotation on its pod template) ...", stsName)
	info("the StatefulSet controller replaces one pod at a time: stop, CNI DEL, pod deleted, new pod (new UID), CNI ADD")
	t0 = time.Now()
	if err := d.rollingRestart(); err != nil {
		return err
	}
	after, err := d.waitRestarted(before)
	if err != nil {
		return err
	}
	info("every %s pod replaced and Ready after %s", stsName, time.Since(t0).Round(100*time.Millisecond))

	say("after the restart:")
	d.printPods(after)
	d.compareAddresses(before, after)

	if d.keep {
		d.waitForever(after)
	}

	sayf("deleting Deployment %s and StatefulSet %s (as `kubectl delete`) ...", deployName, stsName)
	info("the garbage collector deletes their pods, each kubelet stand-in runs CNI DEL, ipamd frees the addresses and the Endpoints")
	t0 = time.Now()
	if err := d.deleteWorkloads(); err != nil {
		return err
	}
	if err := d.waitNothingLeft(2 * time.Minute); err != nil {
		return err
	}
	info("no pods, no Endpoints and no allocated address left after %s", time.Since(t0).Round(100*time.Millisecond))
	d.kubectlGet("ippools", "/apis/underpool.io/v1/ippools")
	d.kubectlGet("poolallocations", "/apis/underpool.io/v1/poolallocations")
	d.kubectlGet("endpoints.underpool.io", "/apis/underpool.io/v1/namespaces/"+namespace+"/endpoints")

	if len(d.failures) > 0 {
		return checkFailures(d.failures)
	}
	return nil
}

// checkFailures are the checks that failed while every step itself worked.
type checkFailures []string

func (c checkFailures) Error() string {
	return fmt.Sprintf("%d check(s) failed:\n  - %s", len(c), strings.Join(c, "\n  - "))
}

// waitForever is --keep: print how to look around, then let Ctrl-C (StopOnInterrupt) end it.
func (d *demo) waitForever(pods []podView) {
	say("--keep: everything stays up until you press Ctrl-C (which cleans it all up). Look around:")
	info("export KUBECONFIG=%s", d.cp.KubeconfigPath)
	if _, err := exec.LookPath("kubectl"); err != nil {
		info("(kubectl is not installed here; any kubectl pointed at that kubeconfig works)")
	}
	info("kubectl get pods -o wide; kubectl get ippools,poolallocations,endpoints.underpool.io,network-attachment-definitions")
	for _, p := range pods {
		if p.sandbox != nil {
			info("ip netns exec %s ip addr show net1      # pod %s on %s", p.sandbox.NetNS.Name(), p.name, p.node)
		}
	}
	if len(pods) > 1 && pods[0].sandbox != nil {
		info("ip netns exec %s ping -c 3 %s", pods[0].sandbox.NetNS.Name(), pods[len(pods)-1].addr())
	}
	for _, n := range d.nodes {
		info("%s: ipamd socket %s, log %s; kubelet stand-in log %s", n.name, n.ipamd.Options.Socket, n.ipamd.LogPath,
			filepath.Join(d.tmp, "kubelet-"+n.name+".log"))
	}
	info("plugin logs: %s, %s", filepath.Join(d.tmp, "underpool.log"), filepath.Join(d.tmp, "<node>", "multus.log"))
	info("control plane logs: %s", filepath.Join(d.tmp, "control-plane"))
	if len(d.failures) > 0 {
		fmt.Fprintf(os.Stderr, "warning: %v\n", checkFailures(d.failures))
	}
	select {}
}

// projectBinaries prefers ./bin (what `make demo` or `make build` just wrote), else
// builds into tmp so `go run ./hack/demo` works on its own too.
func projectBinaries(tmp string) (string, error) {
	bin := filepath.Join(harness.RepoRoot(), "bin")
	complete := true
	for _, name := range []string{"ipamd", "underpool"} { // the demo's NAD uses the meta-plugin
		if st, err := os.Stat(filepath.Join(bin, name)); err != nil || st.Mode()&0o111 == 0 {
			complete = false
		}
	}
	if complete {
		info("ipamd, underpool from %s (make demo, make build)", bin)
		return bin, nil
	}
	bin = filepath.Join(tmp, "bin")
	info("%s has no complete build; building ipamd and the plugins into %s ...", filepath.Join(harness.RepoRoot(), "bin"), bin)
	return bin, harness.BuildProjectBinaries(bin)
}

// installedKinds names the CRDs StartControlPlane installed (ours from deploy/crds and the
// NetworkAttachmentDefinition), read from the same files so the line never goes stale.
func installedKinds() string {
	crds, err := harness.ReadCRDs(harness.DefaultCRDPaths(), true)
	if err != nil {
		return err.Error()
	}
	var kinds []string
	for _, crd := range crds {
		kinds = append(kinds, crd.Spec.Names.Kind)
	}
	return strings.Join(kinds, ", ")
}

// opCtx bounds one API or CNI call: nothing here should take long, but a hung peer must
// not hang the demo.
func opCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), time.Minute)
}

// undoStack runs its steps newest first, once, whether reached by the normal path, an
// error, or StopOnInterrupt (possibly both at the same time: the second caller waits).
// Whatever makes something to undo runs inside build, so a Ctrl-C never tears down while
// a piece is half made and not yet registered, and nothing new is made after cleanup.
type undoStack struct {
	building sync.Mutex // held by build, and by run for good
	mu       sync.Mutex // guards steps
	steps    []undoStep
	done     bool
	err      error
}

type undoStep struct {
	what string
	fn   func() error
}

// errCleanedUp is build's answer once cleanup has started (an interrupt).
var errCleanedUp = errors.New("interrupted: cleaning up")

// build runs fn, which makes things and pushes how to undo them; cleanup waits for it.
func (u *undoStack) build(fn func() error) error {
	u.building.Lock()
	defer u.building.Unlock()
	if u.done {
		return errCleanedUp
	}
	return fn()
}

func (u *undoStack) push(what string, fn func() error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.steps = append(u.steps, undoStep{what, fn})
}

func (u *undoStack) run() error {
	u.building.Lock()
	defer u.building.Unlock()
	if u.done {
		return u.err
	}
	u.done = true
	u.mu.Lock()
	steps := u.steps
	u.mu.Unlock()
	var errs []error
	for i := len(steps) - 1; i >= 0; i-- {
		fmt.Printf("    - %s\n", steps[i].what)
		if err := steps[i].fn(); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", steps[i].what, err))
		}
	}
	u.err = errors.Join(errs...)
	return u.err
}

// printLogTails shows the end of every log the demo's pieces wrote, to stderr.
func (d *demo) printLogTails() {
	if d.tmp == "" {
		return
	}
	logs, _ := filepath.Glob(filepath.Join(d.tmp, "*.log"))
	multus, _ := filepath.Glob(filepath.Join(d.tmp, "*", "multus.log"))
	for _, path := range append(logs, multus...) {
		if tail := lastLines(path, 15); tail != "" {
			rel, _ := filepath.Rel(d.tmp, path)
			fmt.Fprintf(os.Stderr, "--- end of %s ---\n%s\n", rel, tail)
		}
	}
}

// lastLines returns up to n last lines of a file, "" when it is missing or empty.
func lastLines(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil || len(data) == 0 {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// muted silences say and info once an interrupt's cleanup has started.
var muted atomic.Bool

// say announces a step; info adds detail under it.
func say(msg string) {
	if !muted.Load() {
		fmt.Println("==> " + msg)
	}
}

func sayf(format string, args ...any) { say(fmt.Sprintf(format, args...)) }

func info(format string, args ...any) {
	if !muted.Load() {
		fmt.Printf("    "+format+"\n", args...)
	}
}
