package kubelet

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// work takes pod keys off the queue until it shuts down. The workqueue never
// hands one key to two workers at once; podLock also keeps RestartSandbox out.
func (k *Kubelet) work(run *runState) {
	for {
		key, shutdown := run.queue.Get()
		if shutdown {
			return
		}
		// ShutDown still hands out what was queued; a dead kubelet does nothing more
		if run.ctx.Err() != nil {
			run.queue.Done(key)
			continue
		}
		after, err := k.syncPod(run, key)
		switch {
		case err != nil:
			k.logf("%v (retrying)", err)
			run.queue.AddRateLimited(key)
		case after > 0:
			run.queue.Forget(key)
			run.queue.AddAfter(key, after)
		default:
			run.queue.Forget(key)
		}
		run.queue.Done(key)
	}
}

func (k *Kubelet) podLock(key string) *sync.Mutex {
	k.mu.Lock()
	defer k.mu.Unlock()
	l, ok := k.podLocks[key]
	if !ok {
		l = &sync.Mutex{}
		k.podLocks[key] = l
	}
	return l
}

func (k *Kubelet) current(key string) *Sandbox {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.sandboxes[key]
}

func (k *Kubelet) setCurrent(key string, sb *Sandbox) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if sb == nil {
		delete(k.sandboxes, key)
	} else {
		k.sandboxes[key] = sb
	}
}

// syncPod brings one pod's sandbox in line with the pod object: make it for
// a live pod, tear it down for a deleted one. It returns a delay after which
// to look again (a grace period running out), or an error to retry with backoff.
func (k *Kubelet) syncPod(run *runState, key string) (time.Duration, error) {
	lock := k.podLock(key)
	lock.Lock()
	defer lock.Unlock()
	namespace, name, _ := strings.Cut(key, "/")
	pod, err := run.pods.Pods(namespace).Get(name)
	if apierrors.IsNotFound(err) {
		pod = nil
	} else if err != nil {
		return 0, fmt.Errorf("pod %s: %w", key, err)
	}
	sb := k.current(key)
	// A sandbox of a pod that is gone, or of an earlier pod with this name
	// (force-deleted while we were down), is an orphan: tear it down.
	if sb != nil && (pod == nil || sb.PodUID != pod.UID) {
		if err := k.destroySandbox(sb); err != nil {
			return 0, err
		}
		k.setCurrent(key, nil)
		sb = nil
	}
	if pod == nil {
		return 0, nil
	}
	if pod.DeletionTimestamp != nil {
		return k.terminate(pod, sb)
	}
	if pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
		return 0, nil
	}
	if sb == nil {
		if sb, err = k.createSandbox(pod, 0); err != nil {
			return 0, err
		}
		k.setCurrent(key, sb)
	}
	return 0, k.reportRunning(pod, sb)
}

// terminate ends a pod being deleted, in the kubelet's order: the containers
// stop (at once, or at the end of the grace period for one that ignores
// SIGTERM), the sandbox goes (DEL, then the namespace), then the pod object
// is deleted with grace period 0, only if it is still the same pod.
func (k *Kubelet) terminate(pod *corev1.Pod, sb *Sandbox) (time.Duration, error) {
	key := pod.Namespace + "/" + pod.Name
	if pod.Annotations[IgnoreSIGTERMAnnotation] == "true" {
		if wait := time.Until(pod.DeletionTimestamp.Time); wait > 0 {
			return wait, nil
		}
	}
	if sb != nil {
		if err := k.destroySandbox(sb); err != nil {
			return 0, err
		}
		k.setCurrent(key, nil)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := k.cs.CoreV1().Pods(pod.Namespace).Delete(ctx, pod.Name, metav1.DeleteOptions{
		GracePeriodSeconds: ptr.To[int64](0),
		Preconditions:      metav1.NewUIDPreconditions(string(pod.UID)),
	})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		return 0, fmt.Errorf("pod %s: final delete: %w", key, err)
	}
	k.logf("pod %s: terminated and deleted", key)
	return 0, nil
}

// RestartSandbox gives a running pod a new sandbox, as after a pod sandbox
// restart (a node reboot, a sandbox that died): DEL for the old one (unless
// runDel is false, simulating a DEL that was lost), the old namespace goes,
// then a new sandbox ID and namespace and ADD, and the pod's status follows.
// If the new ADD fails, the pod's worker retries it with backoff (when the
// stand-in runs) and the error is returned.
func (k *Kubelet) RestartSandbox(namespace, name string, runDel bool) error {
	key := namespace + "/" + name
	lock := k.podLock(key)
	lock.Lock()
	defer lock.Unlock()
	old := k.current(key)
	if old == nil {
		return fmt.Errorf("kubelet %s: pod %s has no sandbox", k.cfg.NodeName, key)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pod, err := k.cs.CoreV1().Pods(namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("kubelet %s: restart sandbox of %s: %w", k.cfg.NodeName, key, err)
	}
	if runDel {
		if err := k.destroySandbox(old); err != nil {
			return err
		}
	} else if err := old.NetNS.Close(); err != nil {
		return fmt.Errorf("kubelet %s: restart sandbox of %s: %w", k.cfg.NodeName, key, err)
	}
	k.setCurrent(key, nil)
	sb, err := k.createSandbox(pod, old.Attempt+1)
	if err != nil {
		k.enqueue(key)
		return err
	}
	k.setCurrent(key, sb)
	return k.reportRunning(pod, sb)
}

// enqueue asks the workers to look at a pod again, if the stand-in runs.
func (k *Kubelet) enqueue(key string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.run != nil {
		k.run.queue.AddRateLimited(key)
	}
}

// Sandbox returns a copy of the pod's current sandbox.
func (k *Kubelet) Sandbox(namespace, name string) (Sandbox, bool) {
	sb := k.current(namespace + "/" + name)
	if sb == nil {
		return Sandbox{}, false
	}
	return *sb, true
}

// Sandboxes returns copies of every live sandbox on this node.
func (k *Kubelet) Sandboxes() []Sandbox {
	k.mu.Lock()
	defer k.mu.Unlock()
	out := make([]Sandbox, 0, len(k.sandboxes))
	for _, sb := range k.sandboxes {
		out = append(out, *sb)
	}
	return out
}
