package controller

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/underpool/underpool/tests/e2e"
	"github.com/underpool/underpool/tests/harness"
)

// Every manifest under deploy/ is accepted by a real kube-apiserver: kubectl builds the
// kustomization and the server validates each object strictly (schemas, unknown
// fields), without persisting any of it.
func TestDeployManifestsApplyOnServer(t *testing.T) {
	// the tool cache's kubectl, the control plane's version, built on first use
	kubectl, err := harness.Kubectl()
	if err != nil {
		t.Fatal(err)
	}
	// a dry-run Namespace is not persisted, so the namespaced objects need a real one
	nsObj := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "underpool-system"}}
	if err := e2e.Suite.Client.Create(e2e.Ctx(t), nsObj); err != nil && !strings.Contains(err.Error(), "already exists") {
		t.Fatalf("creating namespace underpool-system: %v", err)
	}
	deploy := filepath.Join(harness.RepoRoot(), "deploy")
	out, err := exec.Command(kubectl, "--kubeconfig", e2e.Suite.CP.KubeconfigPath, "apply", "--dry-run=server",
		"--validate=strict", "-k", deploy).CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl apply --dry-run=server -k deploy/: %v\n%s", err, out)
	}
	for _, want := range []string{
		"daemonset.apps/underpool-ipamd", "deployment.apps/underpool-controller", "service/underpool-controller",
		"clusterrolebinding.rbac.authorization.k8s.io/underpool-ipamd", "clusterrolebinding.rbac.authorization.k8s.io/underpool-controller",
		"customresourcedefinition.apiextensions.k8s.io/ippools.underpool.io",
	} {
		if !strings.Contains(string(out), want) {
			t.Fatalf("kubectl did not apply %s:\n%s", want, out)
		}
	}
}
