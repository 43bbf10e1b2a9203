package image

import (
	"path/filepath"
	"testing"

	"github.com/underpool/underpool/tests/harness"
)

// Both install paths, as `make image` pinned them, run the image it built in every
// container: kustomize through bin/image/deploy, Helm through bin/image/values.yaml.
func TestKustomizeAndChartRunTheBuiltImage(t *testing.T) {
	b := makeImage(t)
	kust, _, err := harness.RenderKustomize(filepath.Join(b.dir, "deploy"))
	if err != nil {
		t.Fatal(err)
	}
	chart := filepath.Join(harness.RepoRoot(), "deploy", "helm", "underpool")
	helm, _, err := harness.RenderChart(chart, "--namespace", "underpool-system", "-f", filepath.Join(b.dir, "values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for what, objs := range map[string]map[string]string{"kustomize": harness.ContainerImages(kust), "helm": harness.ContainerImages(helm)} {
		if len(objs) < 3 { // ipamd, its install-cni init container, the controller
			t.Fatalf("%s rendered only %v", what, objs)
		}
		for c, img := range objs {
			if img != b.info.Image {
				t.Errorf("%s: %s runs %q, want the built %q", what, c, img, b.info.Image)
			}
		}
	}
}
