package guest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/tests/e2e"
	"github.com/underpool/underpool/tests/harness"
	"github.com/underpool/underpool/tests/harness/kubelet"
)

var suite struct {
	node   string
	client client.Client
	ipamd  *harness.Ipamd
}

func TestMain(m *testing.M) {
	suite.node = os.Getenv(InVMEnv)
	if suite.node == "" {
		fmt.Println("tests/kernel/guest: these tests run inside the VM that tests/kernel's TestDataPlaneInAVM boots; nothing to do here")
		os.Exit(0)
	}
	ctrllog.SetLogger(logr.Discard()) // the client's own logs say nothing the tests do not
	code := run(m)
	if code != 0 {
		dumpLogs()
	}
	os.Exit(code)
}

func run(m *testing.M) int {
	fail := func(what string, err error) int {
		fmt.Fprintf(os.Stderr, "guest setup: %s: %v\n", what, err)
		return 1
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", Kubeconfig)
	if err != nil {
		return fail("kubeconfig", err)
	}
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, v1.AddToScheme} {
		if err := add(scheme); err != nil {
			return fail("scheme", err)
		}
	}
	if suite.client, err = client.New(cfg, client.Options{Scheme: scheme}); err != nil {
		return fail("client", err)
	}
	// the helpers shared with tests/e2e (its invariant checks, API reads) read the client
	// from e2e.Suite: here it is the guest's, to the host's apiserver
	e2e.Suite.Client = suite.client
	if err := os.MkdirAll(filepath.Dir(socket), 0o755); err != nil {
		return fail("socket dir", err)
	}
	// As in tests/e2e: no GC of attachments the tests made a moment ago, no recycling (the
	// tests' pods exist only as CNI_ARGS).
	suite.ipamd, err = harness.StartIpamd(harness.IpamdOptions{
		Bin: filepath.Join(BinDir, "ipamd"), Kubeconfig: Kubeconfig, NodeName: suite.node,
		Socket: socket, LogPath: filepath.Join(logDir, "ipamd.log"),
		ExtraArgs: []string{"--gc-interval=0", "--gc-min-age=0", "--commit-window=" + CommitWindow},
	})
	if err != nil {
		return fail("ipamd", err)
	}
	defer func() { _ = suite.ipamd.Stop() }()
	// the node's settings, as a runtime's environment gives them to every plugin
	os.Setenv(kubelet.IpamdSocketEnv, socket)
	os.Setenv(kubelet.LogDirEnv, logDir)
	return m.Run()
}

// dumpLogs prints the end of every log under logDir, so a failure inside the VM comes with
// what ipamd and the plugins said (the VM and its files are gone afterwards).
func dumpLogs() {
	files, _ := filepath.Glob(filepath.Join(logDir, "*"))
	for _, f := range files {
		out, _ := exec.Command("tail", "-n", "40", f).CombinedOutput()
		fmt.Printf("==== end of %s ====\n%s\n", f, strings.TrimRight(string(out), "\n"))
	}
}

// ctx bounds one test's calls.
func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return c
}
