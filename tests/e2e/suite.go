package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/tests/harness"
	"github.com/underpool/underpool/tests/harness/kubelet"
)

// Suite is what Main starts, shared by every test of an end-to-end package: starting a
// control plane per test would cost seconds each for nothing the tests need.
var Suite struct {
	Dir    string
	Bin    string
	CP     *harness.ControlPlane
	Client client.Client
	Ipamd  *harness.Ipamd
	CNI    *harness.CNI
	// ControllerMetrics is where the controller serves /metrics (controller/metrics_test.go)
	ControllerMetrics string
}

// NodeName is the node whose ipamd Main starts (Suite.Ipamd); Main also makes "node-b",
// a Node object with no ipamd.
const NodeName = "node-a"

var subnetSeq atomic.Int32

// NextSubnet gives each test its own 10.250.X.0/24 and fd00:250:0:X::/64 so tests never
// share addresses. Each package counts from the same start, on a control plane of its own;
// tests/run-tests.sh runs the packages one after another (-p 1).
func NextSubnet() (v4, v6 string, third int32) {
	x := 10 + subnetSeq.Add(1)
	return fmt.Sprintf("10.250.%d.0/24", x), fmt.Sprintf("fd00:250:0:%x::/64", x), x
}

// Ctx bounds one test's calls.
func Ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	return c
}

// Main is the TestMain of every end-to-end package: where the end-to-end half cannot run
// (not root, no tools) it fails rather than skips; otherwise it builds underpool, starts
// the control plane (with the real controller manager and scheduler), the controller and
// NodeName's ipamd, runs the package's tests and exits with their result.
func Main(m *testing.M) {
	if err := harness.CanRunEndToEnd(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: cannot run: %v\n", err)
		os.Exit(1) // a skipped end-to-end half must not look like a pass
	}
	os.Exit(run(m))
}

// IpamdOptions starts a node's ipamd with recycling off: most tests attach pods that exist
// only as CNI_ARGS, which recycling would rightly take for gone. TestRecycling runs its own.
// CNI GC's minimum age is off: the GC tests collect attachments made a moment before.
// The commit window is short, as the orphan sweeper's interval is, so the sweeper's
// phases fit a test (docs/design.md, the release protocol); every ipamd and the
// controller run with the same.
func IpamdOptions(node string) harness.IpamdOptions {
	o := harness.DefaultIpamdOptions(Suite.Bin, Suite.CP.KubeconfigPath, node, Suite.Dir)
	o.ExtraArgs = []string{"--gc-interval=0", "--gc-min-age=0", "--commit-window=" + CommitWindow}
	return o
}

// CommitWindow is the release protocol's bound in this suite: a quarter of it (2 s) is
// every write's apiserver timeout, ample on a loaded 2-core machine.
const CommitWindow = "8s"

func run(m *testing.M) int {
	var err error
	fail := func(what string, err error) int {
		fmt.Fprintf(os.Stderr, "e2e setup: %s: %v\n", what, err)
		return 1
	}
	if Suite.Dir, err = os.MkdirTemp("", "underpool-e2e-"); err != nil {
		return fail("temp dir", err)
	}
	keep := os.Getenv("E2E_KEEP") != ""
	defer func() {
		if !keep {
			os.RemoveAll(Suite.Dir)
		}
	}()
	if err := harness.EnsureTools("test", "kube-apiserver", "etcd", "kube-controller-manager", "kube-scheduler", "macvlan", "loopback", "multus", "host-local"); err != nil {
		return fail("tools", err)
	}
	Suite.Bin = filepath.Join(Suite.Dir, "bin")
	if err := harness.BuildProjectBinaries(Suite.Bin); err != nil {
		return fail("building underpool", err)
	}
	// Lifecycle: the real controller manager and scheduler run, so tests can use
	// StatefulSets, Deployments and node failures with kubelet stand-ins
	// (tests/harness/kubelet); nodes without one are simply NotReady.
	if Suite.CP, err = harness.StartControlPlane(harness.ControlPlaneOptions{Lifecycle: true, LogDir: filepath.Join(Suite.Dir, "logs")}); err != nil {
		return fail("control plane", err)
	}
	defer Suite.CP.Stop()
	if Suite.Client, err = Suite.CP.Client(v1.AddToScheme); err != nil {
		return fail("client", err)
	}
	for _, n := range []string{NodeName, "node-b"} {
		// labelled at creation: ipamd's node informer then never holds an older copy
		node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n, Labels: map[string]string{"zone": "a"}}}
		if err := Suite.Client.Create(context.Background(), node); err != nil {
			return fail("node "+n, err)
		}
	}
	// the controller first: its webhook (failure policy Fail) then checks every pool the
	// tests create, and its finalizer guards pools with live allocations
	ctl, err := startController()
	if err != nil {
		return fail("controller", err)
	}
	defer ctl.Stop()
	Suite.Ipamd, err = harness.StartIpamd(IpamdOptions(NodeName))
	if err != nil {
		return fail("ipamd", err)
	}
	defer func() { Suite.Ipamd.Stop() }()
	// the node's settings, as a runtime's environment gives them to every plugin (and
	// multus to its delegates): plugins log under Suite.Dir and call this node's ipamd
	os.Setenv(kubelet.LogDirEnv, Suite.Dir)
	os.Setenv(kubelet.IpamdSocketEnv, Suite.Ipamd.Options.Socket)
	Suite.CNI = &harness.CNI{BinDirs: []string{Suite.Bin, harness.CacheBinDir()}, CacheDir: filepath.Join(Suite.Dir, "cni-cache")}
	code := m.Run()
	if code != 0 {
		fmt.Fprintf(os.Stderr, "e2e: logs in %s (set E2E_KEEP=1 to keep them)\n", Suite.Dir)
	}
	return code
}
