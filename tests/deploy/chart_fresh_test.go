package deploy

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// The chart carries copies of controller-gen's output (Helm cannot read files outside the
// chart); `make chart` (run by `make generate`) refreshes them.
func TestChartCopiesOfGeneratedFilesAreFresh(t *testing.T) {
	pairs := map[string]string{
		repo("deploy", "rbac", "ipamd", "role.yaml"):           filepath.Join(chartDir(), "files", "rbac-ipamd.yaml"),
		repo("deploy", "rbac", "controller", "role.yaml"):      filepath.Join(chartDir(), "files", "rbac-controller.yaml"),
		repo("deploy", "monitoring", "prometheusrule.yaml"):    filepath.Join(chartDir(), "files", "monitoring", "prometheusrule.yaml"),
		repo("deploy", "monitoring", "grafana-dashboard.json"): filepath.Join(chartDir(), "files", "monitoring", "grafana-dashboard.json"),
	}
	crds, _ := filepath.Glob(repo("deploy", "crds", "*.yaml"))
	copies, _ := filepath.Glob(filepath.Join(chartDir(), "crds", "*.yaml"))
	if len(crds) == 0 || len(crds) != len(copies) {
		t.Fatalf("deploy/crds has %d files, the chart's crds/ %d: run 'make chart'", len(crds), len(copies))
	}
	for _, c := range crds {
		pairs[c] = filepath.Join(chartDir(), "crds", filepath.Base(c))
	}
	for src, dst := range pairs {
		a, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(dst)
		if err != nil || !bytes.Equal(a, b) {
			t.Errorf("%s is not a fresh copy of %s: run 'make chart' and commit", dst, src)
		}
	}
}
