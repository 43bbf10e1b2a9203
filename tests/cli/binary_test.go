package cli

import (
	"bytes"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/underpool/underpool/tests/harness"
)

// TestBinary runs the built kubectl-underpool as kubectl would: exit codes, stdout, stderr.
func TestBinary(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "kubectl-underpool")
	build := exec.Command("go", "build", "-o", bin, "./cmd/kubectl-underpool")
	build.Dir = harness.RepoRoot()
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	for _, tc := range []struct {
		name       string
		args       []string
		code       int
		out, error string
	}{
		{"help names the kubectl form", []string{"--help"}, 0, "kubectl underpool [command]", ""},
		{"gc help says dry-run only", []string{"gc", "--help"}, 0, "Only --dry-run is supported", ""},
		{"pools against the apiserver", []string{"pools", "-o", "json", "--kubeconfig", suite.cp.KubeconfigPath}, 0, `"pools"`, ""},
		{"a missing pod", []string{"explain", "pod", "nowhere/x", "--kubeconfig", suite.cp.KubeconfigPath}, 1, "", "pod nowhere/x not found: check the namespace"},
		{"render names the network it cannot read", []string{"render", "nowhere", "--kubeconfig", suite.cp.KubeconfigPath}, 1, "", `reading UnderlayNetwork nowhere: underlaynetworks.underpool.io "nowhere" not found`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			cmd := exec.Command(bin, tc.args...)
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			code := 0
			if ee, ok := err.(*exec.ExitError); ok {
				code = ee.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if code != tc.code || !strings.Contains(stdout.String(), tc.out) || !strings.Contains(stderr.String(), tc.error) {
				t.Errorf("exit %d stdout %q stderr %q; want exit %d, stdout with %q, stderr with %q", code, stdout.String(), stderr.String(), tc.code, tc.out, tc.error)
			}
		})
	}
}
