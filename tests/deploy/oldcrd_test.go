package deploy

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"

	"github.com/underpool/underpool/ipamd/daemon"
	"github.com/underpool/underpool/tests/harness"
)

// An Endpoint CRD without selectableFields (older than this release, or on Kubernetes
// before 1.31, whose apiserver drops the field) makes ipamd's Endpoint list by
// status.node fail on every retry. ipamd says so, with the cause and the fix, in /readyz
// and its log, instead of waiting for its caches in silence; once the CRDs are applied
// again it syncs and serves.
func TestIpamdWithAnOldEndpointCRDSaysWhatToFix(t *testing.T) {
	cp, err := harness.StartControlPlane(harness.ControlPlaneOptions{LogDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cp.Stop() })
	crds, err := harness.ReadCRDs([]string{repo("deploy", "crds")}, false)
	if err != nil {
		t.Fatal(err)
	}
	var old []*apiextensionsv1.CustomResourceDefinition
	for _, crd := range crds {
		if crd.Name == "endpoints.underpool.io" {
			crd = crd.DeepCopy()
			for i := range crd.Spec.Versions {
				crd.Spec.Versions[i].SelectableFields = nil
			}
			old = append(old, crd)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if len(old) != 1 || harness.InstallCRDs(ctx, cp.Config, old) != nil {
		t.Fatalf("installing the old Endpoint CRD: %d found", len(old))
	}

	health, err := harness.FreeLoopbackAddress()
	if err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zapcore.InfoLevel)
	done := make(chan error, 1)
	go func() {
		done <- daemon.Run(ctx, daemon.Options{Kubeconfig: cp.KubeconfigPath, NodeName: "n1", Socket: filepath.Join(t.TempDir(), "ipamd.sock"),
			SocketGroup: -1, HealthAddress: health, QPS: 50, Burst: 100, Quarantine: time.Minute}, zap.New(core))
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("ipamd: %v", err)
		}
	}()
	readyz := func() (int, string) {
		resp, err := http.Get("http://" + health + "/readyz")
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	wants := []string{"status.node", "Kubernetes >= 1.31", "kubectl apply -f deploy/crds/"}
	waitUntil(t, "/readyz to name the old CRD", time.Minute, func() (bool, string) {
		code, body := readyz()
		for _, w := range wants {
			if code != http.StatusServiceUnavailable || !strings.Contains(body, w) {
				return false, fmt.Sprintf("%d %s", code, body)
			}
		}
		t.Logf("/readyz: %d %s", code, body)
		return true, ""
	})
	found := false
	for _, e := range logs.FilterLevelExact(zapcore.ErrorLevel).All() {
		if r, _ := e.ContextMap()["reason"].(string); strings.Contains(r, "Kubernetes >= 1.31") {
			found = true
		}
	}
	if !found {
		t.Errorf("no error logged naming the cause: %v", logs.All())
	}

	if err := harness.InstallCRDs(ctx, cp.Config, crds); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "ipamd to sync and serve once the CRDs are applied again", 2*time.Minute, func() (bool, string) {
		code, body := readyz()
		return code == http.StatusOK, fmt.Sprintf("%d %s", code, body)
	})
}

func waitUntil(t *testing.T, what string, timeout time.Duration, cond func() (bool, string)) {
	t.Helper()
	var last string
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(250 * time.Millisecond) {
		ok, why := cond()
		if ok {
			return
		}
		last = why
	}
	t.Fatalf("waiting %s for %s: %s", timeout, what, last)
}
