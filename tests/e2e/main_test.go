// Package e2e proves underpool end to end on real parts: a real kube-apiserver and etcd on
// loopback, ipamd as a process, the plugins driven through libcni as a runtime drives
// them, real network namespaces and macvlan links over throw-away veth parents.
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

// suite is shared by every test of the package: starting a control plane per test would
// cost seconds each for nothing the tests need.
var suite struct {
	dir    string
	bin    string
	cp     *harness.ControlPlane
	client client.Client
	ipamd  *harness.Ipamd
	cni    *harness.CNI
	// controllerMetrics is where the controller serves /metrics (metrics_test.go)
	controllerMetrics string
}

const nodeName = "node-a"

var subnetSeq atomic.Int32

// nextSubnet gives each test its own 10.250.X.0/24 and fd00:250:0:X::/64 so tests never
// share addresses.
func nextSubnet() (v4, v6 string, third int32) {
	x := 10 + subnetSeq.Add(1)
	return fmt.Sprintf("10.250.%d.0/24", x), fmt.Sprintf("fd00:250:0:%x::/64", x), x
}

// ctx bounds one test's calls.
func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	return c
}

func TestMain(m *testing.M) {
	if err := harness.CanRunEndToEnd(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: cannot run: %v\n", err)
		os.Exit(1) // a skipped end-to-end half must not look like a pass
	}
	os.Exit(run(m))
}

// ipamdOptions starts a node's ipamd with recycling off: most tests attach pods that exist
// only as CNI_ARGS, which recycling would rightly take for gone. TestRecycling runs its own.
// CNI GC's minimum age is off: the GC tests collect attachments made a moment before.
// The commit window is short, as the orphan sweeper's interval is, so the sweeper's
// phases fit a test (docs/design.md, the release protocol); every ipamd and the
// controller run with the same.
func ipamdOptions(node string) harness.IpamdOptions {
	o := harness.DefaultIpamdOptions(suite.bin, suite.cp.KubeconfigPath, node, suite.dir)
	o.ExtraArgs = []string{"--gc-interval=0", "--gc-min-age=0", "--commit-window=" + commitWindow}
	return o
}

// commitWindow is the release protocol's bound in this suite: a quarter of it (2 s) is
// every write's apiserver timeout, ample on a loaded 2-core machine.
const commitWindow = "8s"

func run(m *testing.M) int {
	var err error
	fail := func(what string, err error) int {
		fmt.Fprintf(os.Stderr, "e2e setup: %s: %v\n", what, err)
		return 1
	}
	if suite.dir, err = os.MkdirTemp("", "underpool-e2e-"); err != nil {
		return fail("temp dir", err)
	}
	keep := os.Getenv("E2E_KEEP") != ""
	defer func() {
		if !keep {
			os.RemoveAll(suite.dir)
		}
	}()
	if err := harness.EnsureTools("test", "kube-apiserver", "etcd", "kube-controller-manager", "kube-scheduler", "macvlan", "loopback", "multus", "host-local"); err != nil {
		return fail("tools", err)
	}
	suite.bin = filepath.Join(suite.dir, "bin")
	if err := harness.BuildProjectBinaries(suite.bin); err != nil {
		return fail("building underpool", err)
	}
	// Lifecycle: the real controller manager and scheduler run, so tests can use
	// StatefulSets, Deployments and node failures with kubelet stand-ins
	// (tests/harness/kubelet); nodes without one are simply NotReady.
	if suite.cp, err = harness.StartControlPlane(harness.ControlPlaneOptions{Lifecycle: true, LogDir: filepath.Join(suite.dir, "logs")}); err != nil {
		return fail("control plane", err)
	}
	defer suite.cp.Stop()
	if suite.client, err = suite.cp.Client(v1.AddToScheme); err != nil {
		return fail("client", err)
	}
	for _, n := range []string{nodeName, "node-b"} {
		// labelled at creation: ipamd's node informer then never holds an older copy
		node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n, Labels: map[string]string{"zone": "a"}}}
		if err := suite.client.Create(context.Background(), node); err != nil {
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
	suite.ipamd, err = harness.StartIpamd(ipamdOptions(nodeName))
	if err != nil {
		return fail("ipamd", err)
	}
	defer func() { suite.ipamd.Stop() }()
	// the node's settings, as a runtime's environment gives them to every plugin (and
	// multus to its delegates): plugins log under suite.dir and call this node's ipamd
	os.Setenv(kubelet.LogDirEnv, suite.dir)
	os.Setenv(kubelet.IpamdSocketEnv, suite.ipamd.Options.Socket)
	suite.cni = &harness.CNI{BinDirs: []string{suite.bin, harness.CacheBinDir()}, CacheDir: filepath.Join(suite.dir, "cni-cache")}
	code := m.Run()
	if code != 0 {
		fmt.Fprintf(os.Stderr, "e2e: logs in %s (set E2E_KEEP=1 to keep them)\n", suite.dir)
	}
	return code
}
