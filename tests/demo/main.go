// Command demo shows underpool working on this machine, with real parts only: a local
// etcd + kube-apiserver, ipamd as a process, multus calling the underpool plugin for a
// NetworkAttachmentDefinition exactly as a container runtime would, and three pods (network
// namespaces) on a macvlan underlay that ping each other over IPv4 and IPv6.
//
//	go run ./tests/demo [--keep]     (as root; `make demo` builds what it needs first)
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
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/underpool/underpool/ipamd/api/v1"
	"github.com/underpool/underpool/tests/harness"
)

const (
	nodeName  = "demo-node"
	namespace = "default"
	nadName   = "underlay"
	pool4     = "demo-v4"
	pool6     = "demo-v6"
)

var podNames = []string{"web-1", "web-2", "web-3"}

func main() {
	keep := flag.Bool("keep", false, "keep everything running until Ctrl-C and print how to look around")
	flag.Parse()
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "demo: needs root (network namespaces, links and CNI plugins need CAP_NET_ADMIN/CAP_SYS_ADMIN); run it with sudo")
		os.Exit(1)
	}
	d := &demo{keep: *keep}
	// Armed before anything exists, so a Ctrl-C at any point undoes exactly what was made.
	harness.StopOnInterrupt(func() {
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
	if interrupted.Load() {
		select {} // StopOnInterrupt is cleaning up and exits with 130
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "\ndemo FAILED: %v\n", err)
		// A step that broke usually says why in some log, and the logs go with the temp
		// dir: show their ends first. Failed checks (pings) carry their own reasons.
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
	say("done: underpool gave 3 pods dual-stack underlay addresses, they reached each other, and every address went back to its pool")
}

// demo is the state of one run; undo holds how to take each piece down again.
type demo struct {
	keep bool
	undo undoStack

	tmp       string // everything on disk: logs, sockets, CNI caches
	binDir    string // ipamd, underpool, underpool-ipam
	cp        *harness.ControlPlane
	c         client.Client
	ipamd     *harness.Ipamd
	parent    string // macvlan parent: end A of a throw-away veth pair
	cni       *harness.CNI
	cniStderr *os.File // what plugins print on stderr
	multus    []byte   // the runtime's conflist: multus, delegating to the NAD for net1
	pods      []*pod

	failures      []string // non-fatal problems (a failed ping) reported at the end
	saidNoKubectl bool
}

func (d *demo) run() error {
	var err error
	if d.tmp, err = os.MkdirTemp("", "underpool-demo-"); err != nil {
		return err
	}
	d.undo.push("temp dir "+d.tmp, func() error {
		if d.cniStderr != nil {
			d.cniStderr.Close()
		}
		return os.RemoveAll(d.tmp)
	})

	say("locating binaries ...")
	if d.binDir, err = projectBinaries(d.tmp); err != nil {
		return err
	}
	if err := harness.EnsureTools("test", "kube-apiserver", "etcd", "macvlan", "loopback", "multus"); err != nil {
		return err
	}
	info("peers (kube-apiserver, etcd, multus, macvlan, loopback) from %s", harness.CacheBinDir())

	say("starting a local control plane (etcd + kube-apiserver on 127.0.0.1) ...")
	if d.cp, err = harness.StartControlPlane(harness.ControlPlaneOptions{}); err != nil {
		return err
	}
	d.undo.push("control plane (kube-apiserver, etcd)", d.cp.Stop)
	info("API server %s; CRDs: %s", d.cp.Config.Host, installedKinds())
	if d.c, err = d.cp.Client(v1.AddToScheme); err != nil {
		return err
	}

	sayf("registering Node %q and starting its ipamd ...", nodeName)
	if err := d.createNode(); err != nil {
		return err
	}
	if d.ipamd, err = harness.StartIpamd(harness.DefaultIpamdOptions(d.binDir, d.cp.KubeconfigPath, nodeName, d.tmp)); err != nil {
		return err
	}
	d.undo.push("ipamd", func() error {
		if err := d.ipamd.Stop(); err != nil {
			return fmt.Errorf("%w; end of its log:\n%s", err, lastLines(d.ipamd.LogPath, 3))
		}
		return nil
	})
	info("ipamd pid %d serving %s", d.ipamd.Pid(), d.ipamd.Options.Socket)

	sayf("creating IPPools %s (10.250.100.0/24) and %s (fd00:250::/64) ...", pool4, pool6)
	if err := d.createPools(); err != nil {
		return err
	}
	info("%s hands out 10.250.100.10-10.250.100.99 with gateway 10.250.100.1; %s fd00:250::10-fd00:250::ff", pool4, pool6)

	say("creating a throw-away veth pair as the node's uplink (macvlan parent) ...")
	veth, err := harness.NewVethPair(harness.UniqueName("demo"), harness.UniqueName("demo"))
	if err != nil {
		return err
	}
	d.undo.push("veth "+veth.A+"/"+veth.B, veth.Close)
	d.parent = veth.A
	info("parent %s (peer %s)", veth.A, veth.B)

	sayf("creating NetworkAttachmentDefinition %s/%s: underpool over macvlan (bridge) on %s ...", namespace, nadName, d.parent)
	if err := d.createNAD(); err != nil {
		return err
	}
	if err := d.prepareMultus(); err != nil {
		return err
	}

	say("starting 3 pods: Pod object, network namespace, then CNI ADD through multus as a runtime would ...")
	for _, name := range podNames {
		p, err := d.startPod(name)
		if err != nil {
			return err
		}
		info("%s: netns %s, eth0 = cluster network (loopback stand-in), %s = %s/%s", p.name, p.ns.Name(), p.ifName, namespace, nadName)
	}

	say("addresses (from each Pod's k8s.v1.cni.cncf.io/network-status, pools from its underpool Endpoint):")
	if err := d.printAddresses(); err != nil {
		return err
	}
	say("ping matrix (each pod pings every other pod's IPv4 and IPv6 over the macvlan underlay):")
	d.printPingMatrix()
	say("kubectl get ippools:")
	d.kubectlGet("ippools", "/apis/underpool.io/v1/ippools")
	say("kubectl get endpoints.underpool.io:")
	d.kubectlGet("endpoints.underpool.io", "/apis/underpool.io/v1/namespaces/"+namespace+"/endpoints")

	if d.keep {
		d.waitForever()
	}

	say("deleting the pods: CNI DEL through multus, then the Pod objects ...")
	for _, p := range d.pods {
		if err := p.del(); err != nil {
			return fmt.Errorf("CNI DEL %s: %w", p.name, err)
		}
		if err := d.deletePod(p); err != nil {
			return err
		}
	}
	if err := d.waitPoolsEmpty(); err != nil {
		return err
	}
	say("every address is back in its pool:")
	d.kubectlGet("ippools", "/apis/underpool.io/v1/ippools")

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
func (d *demo) waitForever() {
	kc := d.cp.KubeconfigPath
	say("--keep: everything stays up until you press Ctrl-C. Look around:")
	info("kubectl --kubeconfig %s get ippools,endpoints.underpool.io -A", kc)
	info("kubectl --kubeconfig %s get pods,network-attachment-definitions -o yaml", kc)
	for _, p := range d.pods {
		info("ip netns exec %s ip addr        # pod %s", p.ns.Name(), p.name)
	}
	if len(d.pods) > 1 {
		info("ip netns exec %s ping -c 3 %s", d.pods[0].ns.Name(), d.pods[1].v6)
	}
	info("logs: %s (ipamd-%s.log, underpool.log, multus.log)", d.tmp, nodeName)
	if len(d.failures) > 0 {
		fmt.Fprintf(os.Stderr, "warning: %v\n", checkFailures(d.failures))
	}
	select {}
}

// projectBinaries prefers ./bin (what `make build` just wrote), else builds into tmp so
// `go run ./tests/demo` works on its own too.
func projectBinaries(tmp string) (string, error) {
	bin := filepath.Join(harness.RepoRoot(), "bin")
	complete := true
	for _, name := range []string{"ipamd", "underpool", "underpool-ipam"} {
		if st, err := os.Stat(filepath.Join(bin, name)); err != nil || st.Mode()&0o111 == 0 {
			complete = false
		}
	}
	if complete {
		info("ipamd, underpool, underpool-ipam from %s (make build)", bin)
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
type undoStack struct {
	mu    sync.Mutex
	steps []undoStep
	once  sync.Once
	err   error
}

type undoStep struct {
	what    string
	fn      func() error
	pending func() bool // nil: always run; else run (and say so) only while it reports true
}

func (u *undoStack) push(what string, fn func() error) { u.pushPending(what, nil, fn) }

// pushPending adds a step the normal path may already have done (a pod's DEL), so the
// cleanup list only shows what cleanup actually does.
func (u *undoStack) pushPending(what string, pending func() bool, fn func() error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.steps = append(u.steps, undoStep{what, fn, pending})
}

func (u *undoStack) run() error {
	u.once.Do(func() {
		u.mu.Lock()
		steps := u.steps
		u.mu.Unlock()
		var errs []error
		for i := len(steps) - 1; i >= 0; i-- {
			if steps[i].pending != nil && !steps[i].pending() {
				continue
			}
			info("- %s", steps[i].what)
			if err := steps[i].fn(); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", steps[i].what, err))
			}
		}
		u.err = errors.Join(errs...)
	})
	return u.err
}

// printLogTails shows the end of every log the demo's pieces wrote, to stderr.
func (d *demo) printLogTails() {
	if d.tmp == "" {
		return
	}
	logs, _ := filepath.Glob(filepath.Join(d.tmp, "*.log"))
	for _, path := range logs {
		if tail := lastLines(path, 15); tail != "" {
			fmt.Fprintf(os.Stderr, "--- end of %s ---\n%s\n", filepath.Base(path), tail)
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

// say announces a step; info adds detail under it.
func say(msg string) { fmt.Println("==> " + msg) }

func sayf(format string, args ...any) { say(fmt.Sprintf(format, args...)) }

func info(format string, args ...any) { fmt.Printf("    "+format+"\n", args...) }
