package deploy

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/underpool/underpool/tests/harness"
)

// What the chart renders, with its defaults and with every value set, is accepted by a
// real kube-apiserver: kubectl sends each object for strict server-side validation
// (schemas, unknown fields, the IPPool CRD's own schema for values.pools) without
// persisting any of it.
func TestChartAppliesOnServer(t *testing.T) {
	kubectl, err := harness.Kubectl()
	if err != nil {
		t.Fatal(err)
	}
	cp, err := harness.StartControlPlane(harness.ControlPlaneOptions{LogDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cp.Stop() })
	cl, err := cp.Client()
	if err != nil {
		t.Fatal(err)
	}
	// a dry-run Namespace is not persisted, so the namespaced objects need a real one
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := cl.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		values []string
		want   []string
	}{
		{"defaults", nil, []string{"daemonset.apps/underpool-ipamd", "deployment.apps/underpool-controller",
			"service/underpool-controller", "poddisruptionbudget.policy/underpool-controller",
			"clusterrole.rbac.authorization.k8s.io/underpool-ipamd", "clusterrolebinding.rbac.authorization.k8s.io/underpool-controller",
			"serviceaccount/underpool-ipamd", "customresourcedefinition.apiextensions.k8s.io/ippools.underpool.io"}},
		{"all values", []string{"-f", "testdata/values-all.yaml"}, []string{"ippool.underpool.io/chart-test-v4", "ippool.underpool.io/chart-test-v6"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, rendered, err := harness.RenderChart(chartDir(), append([]string{"--namespace", namespace, "--include-crds"}, tc.values...)...)
			if err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(kubectl, "--kubeconfig", cp.KubeconfigPath, "apply", "--dry-run=server", "--validate=strict", "-f", "-")
			cmd.Stdin = bytes.NewReader(rendered)
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("kubectl apply --dry-run=server: %v\n%s", err, out)
			}
			for _, w := range tc.want {
				if !strings.Contains(string(out), w) {
					t.Errorf("kubectl did not apply %s:\n%s", w, out)
				}
			}
		})
	}
}

// The values users set reach the objects: multus.required makes the init container wait
// for multus, cni.binDir moves the hostPath, pools become IPPools, the image pin reaches
// every container.
func TestChartValuesReachTheObjects(t *testing.T) {
	objs, _, err := harness.RenderChart(chartDir(), "--namespace", namespace, "-f", "testdata/values-all.yaml")
	if err != nil {
		t.Fatal(err)
	}
	idx := index(objs)
	ds := idx["DaemonSet/"+namespace+"/underpool-ipamd"]
	inits, _, _ := unstructured.NestedSlice(ds.Object, "spec", "template", "spec", "initContainers")
	if len(inits) != 1 || !strings.Contains(strings.Join(strs(inits[0].(map[string]any)["command"]), " "), "--require-multus") {
		t.Errorf("multus.required: init container %v lacks --require-multus", inits)
	}
	vols, _, _ := unstructured.NestedSlice(ds.Object, "spec", "template", "spec", "volumes")
	if !strings.Contains(strings.Join(flatten(vols), " "), "/usr/libexec/cni") {
		t.Errorf("cni.binDir did not reach the hostPath: %v", vols)
	}
	for c, img := range harness.ContainerImages(objs) {
		if img != "registry.example.test/underpool:v9.9.9-test" {
			t.Errorf("%s runs %s", c, img)
		}
	}
	for _, key := range []string{"IPPool//chart-test-v4", "IPPool//chart-test-v6"} {
		if _, ok := idx[key]; !ok {
			t.Errorf("values.pools: %s not rendered", key)
		}
	}
	if pdb := idx["PodDisruptionBudget/"+namespace+"/underpool-controller"]; pdb.Object == nil {
		t.Error("no PodDisruptionBudget for the controller")
	} else if v, _, _ := unstructured.NestedFieldNoCopy(pdb.Object, "spec", "minAvailable"); fmt.Sprint(v) != "2" {
		t.Errorf("PodDisruptionBudget minAvailable %v, want 2", v)
	}
}

func strs(v any) []string {
	var out []string
	for _, s := range v.([]any) {
		out = append(out, s.(string))
	}
	return out
}

func flatten(vols []any) []string {
	var out []string
	for _, v := range vols {
		if p, ok, _ := unstructured.NestedString(v.(map[string]any), "hostPath", "path"); ok {
			out = append(out, p)
		}
	}
	return out
}
