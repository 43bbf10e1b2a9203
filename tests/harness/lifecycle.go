package harness

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// lifecycleBinaries are what ControlPlaneOptions.Lifecycle adds to the
// control plane; tests/tools/build.sh controlplane builds them.
var lifecycleBinaries = []string{"kube-controller-manager", "kube-scheduler"}

// Node health timings for the controller manager. The defaults (5 s period,
// 50 s grace) would make a test of a dead node wait about a minute before
// the node is even NotReady; the kubelet stand-in renews its Lease every
// second, so a 10 s grace still leaves a loaded machine ample slack.
const (
	NodeMonitorPeriod      = 1 * time.Second
	NodeMonitorGracePeriod = 10 * time.Second
)

// startLifecycle starts kube-controller-manager and kube-scheduler against
// the running apiserver and waits until the controller manager acts (the
// "default" ServiceAccount appears) and both are still alive. Leader election
// is off (one instance each), so there is no Lease to wait for; their secure
// ports are off too, so there is no /healthz either.
func (cp *ControlPlane) startLifecycle(ctx context.Context, logDir, saKey string, cs kubernetes.Interface) error {
	var err error
	cp.ControllerManager, err = StartProcess("kube-controller-manager", filepath.Join(CacheBinDir(), "kube-controller-manager"), []string{
		"--kubeconfig", cp.KubeconfigPath,
		"--leader-elect=false",
		"--secure-port=0",
		"--controllers=*",
		// the service-account token controller signs with the apiserver's key
		"--service-account-private-key-file", saKey,
		"--use-service-account-credentials=false",
		"--node-monitor-period", NodeMonitorPeriod.String(),
		"--node-monitor-grace-period", NodeMonitorGracePeriod.String(),
		// the defaults (20 QPS) would throttle StatefulSets and pod GC in benchmarks
		"--kube-api-qps=200", "--kube-api-burst=400",
	}, filepath.Join(logDir, "kube-controller-manager.log"))
	if err != nil {
		return err
	}
	cp.Scheduler, err = StartProcess("kube-scheduler", filepath.Join(CacheBinDir(), "kube-scheduler"), []string{
		"--kubeconfig", cp.KubeconfigPath,
		"--leader-elect=false",
		"--secure-port=0",
	}, filepath.Join(logDir, "kube-scheduler.log"))
	if err != nil {
		return err
	}
	procs := []*Process{cp.Etcd, cp.APIServer, cp.ControllerManager, cp.Scheduler}
	if err := waitUntil(ctx, `ServiceAccount "default" (proves kube-controller-manager runs)`, procs, func(ctx context.Context) error {
		_, err := cs.CoreV1().ServiceAccounts(metav1.NamespaceDefault).Get(ctx, "default", metav1.GetOptions{})
		return err
	}); err != nil {
		return err
	}
	// a scheduler that cannot start (bad flag, bad kubeconfig) exits within
	// a second or so; it has no other readiness signal without its port
	select {
	case <-cp.Scheduler.Done():
		_, err := cp.Scheduler.Exited()
		return fmt.Errorf("kube-scheduler exited (%v); end of %s:\n%s", err, cp.Scheduler.LogPath, tail(cp.Scheduler.LogPath, 20))
	case <-time.After(time.Second):
	}
	return nil
}
