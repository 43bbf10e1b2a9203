// Package cli proves `kubectl underpool` against a real kube-apiserver: each test writes
// pools, namespaces, pods, NetworkAttachmentDefinitions, events and Endpoints (as ipamd
// writes them) and runs the plugin's commands, as a user would, on that state.
package cli

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/underpool/underpool/kubectlplugin"
	"github.com/underpool/underpool/tests/harness"
)

// suite is shared by every test: the control plane starts once (about 2 s).
var suite struct {
	cp     *harness.ControlPlane
	client client.Client
}

func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	var err error
	// the peers' CRDs, for `import`: whereabouts' from its module (tests/tools/build.sh), Spiderpool's by hand
	if err := harness.EnsureTools("whereabouts", "whereabouts"); err != nil { // its build keeps its CRDs
		fmt.Fprintf(os.Stderr, "cli: tools: %v\n", err)
		return 1
	}
	peers := []string{filepath.Join(harness.CacheDir(), "whereabouts-crds"), filepath.Join(harness.RepoRoot(), "tests", "testdata", "crds", "spiderpool")}
	if suite.cp, err = harness.StartControlPlane(harness.ControlPlaneOptions{CRDPaths: peers}); err != nil {
		fmt.Fprintf(os.Stderr, "cli: control plane: %v\n", err)
		return 1
	}
	defer suite.cp.Stop()
	scheme, err := kubectlplugin.Scheme()
	if err != nil {
		fmt.Fprintf(os.Stderr, "cli: scheme: %v\n", err)
		return 1
	}
	if suite.client, err = client.New(suite.cp.Config, client.Options{Scheme: scheme}); err != nil {
		fmt.Fprintf(os.Stderr, "cli: client: %v\n", err)
		return 1
	}
	return m.Run()
}
