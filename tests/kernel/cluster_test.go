package kernel

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/tests/e2e"
	"github.com/underpool/underpool/tests/harness"
	"github.com/underpool/underpool/tests/kernel/guest"
)

// vmNode is the Node the VM stands for; its ipamd serves it.
const vmNode = "vm-node"

// cluster is the control plane on this machine's loopback and the cluster-wide controller
// (its webhook validates the pools the guest creates), as in a real cluster where only
// ipamd runs on the node.
type cluster struct {
	cp         *harness.ControlPlane
	client     client.Client
	controller *harness.Process
}

func (c *cluster) stop() {
	if c.controller != nil {
		_ = c.controller.Stop()
	}
	_ = c.cp.Stop()
}

func startCluster(work, ipamd string) (*cluster, error) {
	cp, err := harness.StartControlPlane(harness.ControlPlaneOptions{LogDir: filepath.Join(work, "logs")})
	if err != nil {
		return nil, err
	}
	cl := &cluster{cp: cp}
	if cl.client, err = cp.Client(v1.AddToScheme); err != nil {
		cl.stop()
		return nil, err
	}
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: vmNode}}
	if err := cl.client.Create(context.Background(), node); err != nil {
		cl.stop()
		return nil, fmt.Errorf("node %s: %w", vmNode, err)
	}
	if cl.controller, err = startController(work, ipamd, cl); err != nil {
		cl.stop()
		return nil, err
	}
	return cl, nil
}

// startController runs ipamd in controller mode with its webhook on loopback, and waits
// until the apiserver actually calls it (as tests/e2e does, with the same wait).
func startController(work, ipamd string, cl *cluster) (*harness.Process, error) {
	port, err := harness.FreePort()
	if err != nil {
		return nil, err
	}
	p, err := harness.StartProcess("controller", ipamd, []string{"--mode=controller",
		"--kubeconfig", cl.cp.KubeconfigPath, "--webhook-host=127.0.0.1", fmt.Sprintf("--webhook-port=%d", port),
		fmt.Sprintf("--webhook-url=https://127.0.0.1:%d", port),
		"--leader-election-namespace=default", "--health-address=", "--metrics-address=",
		"--commit-window=" + guest.CommitWindow}, filepath.Join(work, "logs", "controller.log"))
	if err != nil {
		return nil, err
	}
	if err := e2e.WaitForWebhook(cl.client, p); err != nil {
		return nil, err
	}
	return p, nil
}

// writeGuestConfig puts into the overlay what the guest needs besides binaries: a
// kubeconfig naming the apiserver as the guest reaches it (10.0.2.2, which the serving
// certificate carries), and /underpool/run, which init runs: the guest's tests under
// test2json, their results on the second serial port.
func writeGuestConfig(overlay string, cl *cluster) error {
	cfg := cl.cp.Config
	port := cfg.Host[strings.LastIndex(cfg.Host, ":")+1:]
	kc := clientcmdapi.NewConfig()
	kc.Clusters["vm"] = &clientcmdapi.Cluster{Server: "https://" + harness.QEMUHostAddress.String() + ":" + port, CertificateAuthorityData: cfg.CAData}
	kc.AuthInfos["vm"] = &clientcmdapi.AuthInfo{Token: cfg.BearerToken}
	kc.Contexts["vm"] = &clientcmdapi.Context{Cluster: "vm", AuthInfo: "vm", Namespace: "default"}
	kc.CurrentContext = "vm"
	if err := clientcmd.WriteToFile(*kc, filepath.Join(overlay, guest.Kubeconfig)); err != nil {
		return err
	}
	args := []string{"-test.v=test2json", "-test.timeout=6m", "-test.count=1"}
	if run := os.Getenv("UNDERPOOL_VM_RUN"); run != "" {
		// quoted: a regexp's | and ( would be the shell's
		args = append(args, "'-test.run="+strings.ReplaceAll(run, "'", `'\''`)+"'")
	}
	script := fmt.Sprintf(`#!/bin/sh
# written by tests/kernel for this run: the guest's tests, framed by test2json
export %s=%s
cd %s
%s/test2json -t -p guest %s/guest.test %s >/dev/ttyS1 2>&1
`, guest.InVMEnv, vmNode, guest.Dir, guest.Dir, guest.Dir, strings.Join(args, " "))
	return os.WriteFile(filepath.Join(overlay, guest.Dir, "run"), []byte(script), 0o755)
}
