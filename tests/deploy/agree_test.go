package deploy

import (
	"bufio"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/pmezard/go-difflib/difflib"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"github.com/underpool/underpool/tests/harness"
)

// What must be equal between the two renderings, per object: everything an object does.
// Metadata labels may differ (Helm adds its own); pod template labels may not, they are
// inside spec.
var compared = []string{"spec", "rules", "roleRef", "subjects"}

// The chart's defaults render exactly deploy/'s objects: same kinds and names, same specs
// (images, commands, args, probes, security contexts, resources), same RBAC rules and
// bindings, same CRDs. The Namespace is kustomize's alone (Helm creates release namespaces).
func TestKustomizeAndChartRenderTheSameObjects(t *testing.T) {
	kust, _, err := harness.RenderKustomize(repo("deploy"))
	if err != nil {
		t.Fatal(err)
	}
	chart, _, err := harness.RenderChart(chartDir(), "--namespace", namespace, "--include-crds")
	if err != nil {
		t.Fatal(err)
	}
	k, h := index(kust), index(chart)
	delete(k, "Namespace//"+namespace)
	for key, ko := range k {
		ho, ok := h[key]
		if !ok {
			t.Errorf("%s is in deploy/ but not in the chart", key)
			continue
		}
		for _, f := range compared {
			if !reflect.DeepEqual(ko.Object[f], ho.Object[f]) {
				t.Errorf("%s .%s differs:\n%s", key, f, yamlDiff(ko.Object[f], ho.Object[f]))
			}
		}
	}
	for key := range h {
		if _, ok := k[key]; !ok {
			t.Errorf("%s is in the chart but not in deploy/", key)
		}
	}
}

func yamlDiff(a, b any) string {
	ya, _ := yaml.Marshal(a)
	yb, _ := yaml.Marshal(b)
	d, _ := difflib.GetUnifiedDiffString(difflib.UnifiedDiff{A: difflib.SplitLines(string(ya)), B: difflib.SplitLines(string(yb)),
		FromFile: "kustomize", ToFile: "helm", Context: 2})
	return d
}

func index(objs []unstructured.Unstructured) map[string]unstructured.Unstructured {
	m := map[string]unstructured.Unstructured{}
	for _, o := range objs {
		m[o.GetKind()+"/"+o.GetNamespace()+"/"+o.GetName()] = o
	}
	return m
}

// The default image is named once per file, and the names agree: the Makefile's
// IMAGE_REPO, the chart's image.repository and appVersion, the kustomization's images: pin.
func TestDefaultImageAgreesAcrossMakefileChartAndKustomize(t *testing.T) {
	var values struct {
		Image struct{ Repository, Tag string }
	}
	var chart struct{ AppVersion string }
	var kust struct {
		Images []struct{ Name, NewName, NewTag string }
	}
	readYAML(t, repo("deploy", "helm", "underpool", "values.yaml"), &values)
	readYAML(t, repo("deploy", "helm", "underpool", "Chart.yaml"), &chart)
	readYAML(t, repo("deploy", "kustomization.yaml"), &kust)
	if len(kust.Images) != 1 {
		t.Fatalf("deploy/kustomization.yaml: want one images: entry, got %+v", kust.Images)
	}
	pin := kust.Images[0]
	kustRepo := pin.NewName
	if kustRepo == "" {
		kustRepo = pin.Name
	}
	makeRepo := makefileDefault(t, "IMAGE_REPO")
	if values.Image.Repository != makeRepo || kustRepo != makeRepo {
		t.Errorf("image repository: Makefile %q, chart %q, kustomization %q", makeRepo, values.Image.Repository, kustRepo)
	}
	if values.Image.Tag != "" || pin.NewTag != chart.AppVersion {
		t.Errorf("image tag: chart values %q (want empty: appVersion), appVersion %q, kustomization %q", values.Image.Tag, chart.AppVersion, pin.NewTag)
	}
}

func readYAML(t *testing.T, path string, v any) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err == nil {
		err = yaml.Unmarshal(data, v)
	}
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

func makefileDefault(t *testing.T, name string) string {
	t.Helper()
	f, err := os.Open(repo("Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" ?= "); ok {
			return strings.TrimSpace(v)
		}
	}
	t.Fatalf("Makefile sets no default %s", name)
	return ""
}
