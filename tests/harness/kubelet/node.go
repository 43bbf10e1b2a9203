package kubelet

import (
	"context"
	"fmt"
	"maps"
	"runtime"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
)

// kubeletVersion is what the Node reports; it matches the control plane the
// harness builds, so version-skew checks see a supported kubelet.
const kubeletVersion = "v1.34.4"

// registerNode creates the Node or takes over an existing one (adding our
// labels), then posts its full status, as a kubelet registers on start.
func (k *Kubelet) registerNode(ctx context.Context) error {
	labels := map[string]string{
		corev1.LabelHostname:   k.cfg.NodeName,
		corev1.LabelOSStable:   "linux",
		corev1.LabelArchStable: runtime.GOARCH,
	}
	maps.Copy(labels, k.cfg.Labels)
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: k.cfg.NodeName, Labels: labels}}
	_, err := k.cs.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
			cur, err := k.cs.CoreV1().Nodes().Get(ctx, k.cfg.NodeName, metav1.GetOptions{})
			if err != nil {
				return err
			}
			if cur.Labels == nil {
				cur.Labels = map[string]string{}
			}
			maps.Copy(cur.Labels, labels)
			_, err = k.cs.CoreV1().Nodes().Update(ctx, cur, metav1.UpdateOptions{})
			return err
		})
	}
	if err != nil {
		return fmt.Errorf("kubelet %s: register node: %w", k.cfg.NodeName, err)
	}
	if err := k.updateNodeStatus(ctx); err != nil {
		return fmt.Errorf("kubelet %s: register node: %w", k.cfg.NodeName, err)
	}
	return nil
}

// updateNodeStatus posts capacity, addresses, node info and the conditions
// with a fresh heartbeat. A condition keeps its lastTransitionTime while its
// status is unchanged, so a node the controller marked Unknown shows a new
// transition when we come back.
func (k *Kubelet) updateNodeStatus(ctx context.Context) error {
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		node, err := k.cs.CoreV1().Nodes().Get(ctx, k.cfg.NodeName, metav1.GetOptions{})
		if err != nil {
			return err
		}
		now := metav1.Now()
		want := []corev1.NodeCondition{
			{Type: corev1.NodeMemoryPressure, Status: corev1.ConditionFalse, Reason: "KubeletHasSufficientMemory"},
			{Type: corev1.NodeDiskPressure, Status: corev1.ConditionFalse, Reason: "KubeletHasNoDiskPressure"},
			{Type: corev1.NodePIDPressure, Status: corev1.ConditionFalse, Reason: "KubeletHasSufficientPID"},
			{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady", Message: "kubelet stand-in is posting ready status"},
		}
		for i := range want {
			want[i].LastHeartbeatTime, want[i].LastTransitionTime = now, now
			for _, old := range node.Status.Conditions {
				if old.Type == want[i].Type && old.Status == want[i].Status {
					want[i].LastTransitionTime = old.LastTransitionTime
				}
			}
		}
		node.Status.Conditions = want
		node.Status.Capacity = k.cfg.Capacity.DeepCopy()
		node.Status.Allocatable = k.cfg.Capacity.DeepCopy()
		node.Status.Addresses = []corev1.NodeAddress{
			{Type: corev1.NodeInternalIP, Address: k.cfg.NodeIP},
			{Type: corev1.NodeHostName, Address: k.cfg.NodeName},
		}
		node.Status.NodeInfo = corev1.NodeSystemInfo{
			MachineID: k.cfg.NodeName, SystemUUID: k.cfg.NodeName, BootID: k.cfg.NodeName,
			KernelVersion: "simulated", OSImage: "underpool kubelet stand-in",
			ContainerRuntimeVersion: "standin://1.0.0",
			KubeletVersion:          kubeletVersion,
			OperatingSystem:         "linux", Architecture: runtime.GOARCH,
		}
		_, err = k.cs.CoreV1().Nodes().UpdateStatus(ctx, node, metav1.UpdateOptions{})
		return err
	})
}

// postStatus renews the Ready heartbeat until ctx ends. The node-lifecycle
// controller also accepts the Lease as a heartbeat; a kubelet posts both.
func (k *Kubelet) postStatus(ctx context.Context) {
	tick := time.NewTicker(k.cfg.StatusInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if err := k.updateNodeStatus(ctx); err != nil && ctx.Err() == nil {
			k.logf("node status: %v", err)
		}
	}
}
