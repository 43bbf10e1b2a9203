package e2e

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/controller/webhook"
	"github.com/underpool/underpool/tests/harness"
)

// startController runs ipamd in controller mode with its webhook on loopback, and waits
// until the apiserver actually calls it.
func startController() (*harness.Process, error) {
	port, err := harness.FreePort()
	if err != nil {
		return nil, err
	}
	if Suite.ControllerMetrics, err = harness.FreeLoopbackAddress(); err != nil {
		return nil, err
	}
	p, err := harness.StartProcess("controller", filepath.Join(Suite.Bin, "ipamd"), []string{"--mode=controller",
		"--kubeconfig", Suite.CP.KubeconfigPath, "--webhook-host=127.0.0.1", fmt.Sprintf("--webhook-port=%d", port),
		fmt.Sprintf("--webhook-url=https://127.0.0.1:%d", port),
		"--leader-election-namespace=default", "--health-address=", "--metrics-address=" + Suite.ControllerMetrics,
		// orphans are freed quickly here so TestRecycling sees it; the grace still spans
		// several sweeps, well above any informer lag of an idle test apiserver
		"--orphan-interval=500ms", "--orphan-grace=3s", "--commit-window=" + CommitWindow,
		// the Endpoints of deleted nodes are the controller's to recycle: as fast as the
		// lifecycle tests' ipamds recycle their own
		"--recycle-interval=1s", "--recycle-grace=2s"}, filepath.Join(Suite.Dir, "controller.log"))
	if err != nil {
		return nil, err
	}
	if err := WaitForWebhook(Suite.Client, p); err != nil {
		return nil, err
	}
	return p, nil
}

// WaitForWebhook waits, 90 s at most, until the controller p has registered its validating
// webhook and the apiserver actually calls it; it stops p if it never does. Tests that
// create pools before then would pass objects the webhook refuses.
func WaitForWebhook(c client.Client, p *harness.Process) error {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	probe := &v1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: "webhook-probe"}, Spec: v1.IPPoolSpec{Subnet: "10.250.255.0/24", Gateway: "10.250.254.1"}}
	for {
		cfg := &admissionregistrationv1.ValidatingWebhookConfiguration{}
		registered := c.Get(ctx, client.ObjectKey{Name: webhook.ConfigName}, cfg) == nil
		// a gateway outside the subnet passes CEL but not the webhook: rejection proves it is live
		if err := c.Create(ctx, probe.DeepCopy(), client.DryRunAll); registered && err != nil && strings.Contains(err.Error(), "spec.gateway") {
			return nil
		}
		if exited, err := p.Exited(); exited {
			return fmt.Errorf("controller exited: %v (see %s)", err, p.LogPath)
		}
		select {
		case <-ctx.Done():
			_ = p.Stop()
			return fmt.Errorf("the webhook never answered (see %s)", p.LogPath)
		case <-time.After(200 * time.Millisecond):
		}
	}
}
