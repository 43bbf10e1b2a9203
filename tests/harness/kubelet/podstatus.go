package kubelet

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8stypes "k8s.io/apimachinery/pkg/types"
)

// reportRunning sets the pod Running and Ready with its containers running
// in sandbox sb, unless the pod already says so. The status subresource is
// patched (merge patch), so it never conflicts with multus writing the
// network-status annotation at the same moment.
func (k *Kubelet) reportRunning(pod *corev1.Pod, sb *Sandbox) error {
	want := runningStatus(pod, sb, k.cfg.NodeIP)
	if alreadyReported(pod, want) {
		return nil
	}
	patch, err := json.Marshal(map[string]any{"status": want})
	if err != nil {
		return fmt.Errorf("pod %s: status patch: %w", sb.key(), err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := k.cs.CoreV1().Pods(pod.Namespace).Patch(ctx, pod.Name, k8stypes.MergePatchType, patch,
		metav1.PatchOptions{}, "status"); err != nil {
		return fmt.Errorf("pod %s: status: %w", sb.key(), err)
	}
	return nil
}

// runningStatus is the status a kubelet reports once every container of the
// pod has started and (having no probes) is ready.
func runningStatus(pod *corev1.Pod, sb *Sandbox, hostIP string) corev1.PodStatus {
	started := metav1.NewTime(sb.Created.Truncate(time.Second))
	startTime := started
	if pod.Status.StartTime != nil {
		startTime = *pod.Status.StartTime
	}
	cond := func(t corev1.PodConditionType) corev1.PodCondition {
		return corev1.PodCondition{Type: t, Status: corev1.ConditionTrue, LastTransitionTime: started}
	}
	st := corev1.PodStatus{
		Phase: corev1.PodRunning,
		Conditions: []corev1.PodCondition{
			cond(corev1.PodReadyToStartContainers), cond(corev1.PodInitialized),
			cond(corev1.ContainersReady), cond(corev1.PodReady), cond(corev1.PodScheduled),
		},
		HostIP:    hostIP,
		HostIPs:   []corev1.HostIP{{IP: hostIP}},
		StartTime: &startTime,
		QOSClass:  pod.Status.QOSClass,
	}
	for _, c := range pod.Spec.InitContainers {
		st.InitContainerStatuses = append(st.InitContainerStatuses, corev1.ContainerStatus{
			Name: c.Name, Image: c.Image, ImageID: imageID(c.Image), ContainerID: containerID(sb, c.Name),
			RestartCount: int32(sb.Attempt),
			State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
				ExitCode: 0, Reason: "Completed", StartedAt: started, FinishedAt: started, ContainerID: containerID(sb, c.Name)}},
		})
	}
	for _, c := range pod.Spec.Containers {
		st.ContainerStatuses = append(st.ContainerStatuses, corev1.ContainerStatus{
			Name: c.Name, Image: c.Image, ImageID: imageID(c.Image), ContainerID: containerID(sb, c.Name),
			Ready: true, Started: new(true), RestartCount: int32(sb.Attempt),
			State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: started}},
		})
	}
	return st
}

// alreadyReported: the pod is Running with its containers in this sandbox.
func alreadyReported(pod *corev1.Pod, want corev1.PodStatus) bool {
	if pod.Status.Phase != corev1.PodRunning || len(pod.Status.ContainerStatuses) != len(want.ContainerStatuses) {
		return false
	}
	for i, cs := range pod.Status.ContainerStatuses {
		if !cs.Ready || cs.ContainerID != want.ContainerStatuses[i].ContainerID {
			return false
		}
	}
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// containerID derives a stable container ID from the sandbox, so reporting
// the same sandbox twice gives the same status.
func containerID(sb *Sandbox, name string) string {
	sum := sha256.Sum256([]byte(sb.ContainerID + "/" + name))
	return "containerd://" + hex.EncodeToString(sum[:])
}

func imageID(image string) string {
	sum := sha256.Sum256([]byte(image))
	return image + "@sha256:" + hex.EncodeToString(sum[:])
}
