package kubelet

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/containernetworking/cni/pkg/types"
	corev1 "k8s.io/api/core/v1"
	k8stypes "k8s.io/apimachinery/pkg/types"

	"github.com/underpool/underpool/tests/harness"
)

// Sandbox is one pod sandbox: a network namespace set up by CNI ADD.
type Sandbox struct {
	PodNamespace, PodName string
	PodUID                k8stypes.UID
	// ContainerID is the sandbox ID (64 hex digits, as containerd makes
	// them), sent to plugins as CNI_CONTAINERID and K8S_POD_INFRA_CONTAINER_ID.
	ContainerID string
	NetNS       *harness.NetNS
	// Result is what ADD returned (with multus: the cluster network's result;
	// the pod's other networks are in its network-status annotation).
	Result types.Result
	// Attempt counts the pod's sandboxes before this one (the CRI's attempt),
	// and is reported as the containers' restart count.
	Attempt int
	Created time.Time
}

func (sb *Sandbox) key() string { return sb.PodNamespace + "/" + sb.PodName }

func (sb *Sandbox) runtime() harness.Runtime {
	return harness.Runtime{
		ContainerID: sb.ContainerID, NetNS: sb.NetNS.Path(), IfName: "eth0",
		PodNamespace: sb.PodNamespace, PodName: sb.PodName, PodUID: string(sb.PodUID),
	}
}

// newSandboxID is 32 random bytes in hex, the form of a containerd sandbox ID.
func newSandboxID() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // never fails on Linux
	return hex.EncodeToString(b)
}

// createSandbox makes a namespace and runs ADD for pod. On failure it does
// what the kubelet and containerd do: an event FailedCreatePodSandBox naming
// the error, DEL for the failed sandbox (plugins must clean up half-made
// state), and the namespace goes. The caller retries with a new sandbox.
func (k *Kubelet) createSandbox(pod *corev1.Pod, attempt int) (*Sandbox, error) {
	netns, err := harness.NewNetNS(harness.UniqueName("kls"))
	if err != nil {
		return nil, fmt.Errorf("pod %s/%s: sandbox netns: %w", pod.Namespace, pod.Name, err)
	}
	sb := &Sandbox{PodNamespace: pod.Namespace, PodName: pod.Name, PodUID: pod.UID,
		ContainerID: newSandboxID(), NetNS: netns, Attempt: attempt, Created: time.Now()}
	sb.Result, err = k.cniAdd(sb)
	if err == nil {
		k.logf("pod %s: sandbox %.12s ready in %s", sb.key(), sb.ContainerID, netns.Name())
		return sb, nil
	}
	// the kubelet's wording, so tests and humans recognise it
	k.recorder.Eventf(pod, corev1.EventTypeWarning, "FailedCreatePodSandBox",
		"Failed to create pod sandbox: rpc error: code = Unknown desc = failed to setup network for sandbox %q: %v", sb.ContainerID, err)
	addErr := fmt.Errorf("pod %s: sandbox %.12s: CNI ADD: %w", sb.key(), sb.ContainerID, err)
	if delErr := k.cniDel(sb); delErr != nil {
		k.logf("pod %s: DEL after failed ADD of %.12s: %v", sb.key(), sb.ContainerID, delErr)
	}
	if err := netns.Close(); err != nil {
		k.logf("pod %s: %v", sb.key(), err)
	}
	return nil, addErr
}

// destroySandbox runs DEL and, once it succeeded, removes the namespace. A
// failed DEL leaves everything in place for the next try, as the kubelet
// retries StopPodSandbox until the runtime reports success.
func (k *Kubelet) destroySandbox(sb *Sandbox) error {
	if err := k.cniDel(sb); err != nil {
		return fmt.Errorf("pod %s: sandbox %.12s: CNI DEL: %w", sb.key(), sb.ContainerID, err)
	}
	if err := sb.NetNS.Close(); err != nil {
		return fmt.Errorf("pod %s: sandbox %.12s: %w", sb.key(), sb.ContainerID, err)
	}
	k.logf("pod %s: sandbox %.12s removed", sb.key(), sb.ContainerID)
	return nil
}

func (k *Kubelet) cniAdd(sb *Sandbox) (types.Result, error) {
	release := k.cniSlot()
	defer release()
	ctx, cancel := context.WithTimeout(context.Background(), k.cfg.CNITimeout)
	defer cancel()
	return k.cfg.CNI.Add(ctx, k.conflist(), sb.runtime())
}

func (k *Kubelet) cniDel(sb *Sandbox) error {
	release := k.cniSlot()
	defer release()
	ctx, cancel := context.WithTimeout(context.Background(), k.cfg.CNITimeout)
	defer cancel()
	return k.cfg.CNI.Del(ctx, k.conflist(), sb.runtime())
}

// SetConflist replaces the node's CNI network config, as an operator replacing the file
// in /etc/cni/net.d does (switching IPAM, say): every later ADD and DEL uses it, the DELs
// of sandboxes made before included, as containerd tears a sandbox down with the config
// it has then. (Multus, by contrast, replays for DEL the delegates it cached at ADD.)
func (k *Kubelet) SetConflist(conflist []byte) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.cfg.Conflist = conflist
}

func (k *Kubelet) conflist() []byte {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.cfg.Conflist
}

// cniSlot waits for one of MaxParallelCNI slots. CNI calls are not tied to
// the run context: Stop lets a call in flight finish instead of killing a
// plugin half-way, which would simulate a crashed runtime, not a dead kubelet.
func (k *Kubelet) cniSlot() (release func()) {
	k.cniSlots <- struct{}{}
	return func() { <-k.cniSlots }
}
