package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/underpool/underpool/tests/harness"
)

// benchNode is the node ipamd serves; pods are "scheduled" to it.
const benchNode = "bench-node"

// ensureNode registers the Node a kubelet would have registered. ipamd reads its node
// (labels drive pool affinity) and, finding none in its cache, would ask the apiserver
// on every ADD: a cost no real cluster pays.
func ensureNode(ctx context.Context, kube client.Client) error {
	err := kube.Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: benchNode}})
	if apierrors.IsAlreadyExists(err) {
		return nil
	}
	return err
}

// preparePods creates, untimed, what a runtime has before it calls CNI: a Pod object
// bound to the node (its UID goes into K8S_POD_UID) and a network namespace. Real Pod
// objects matter: ipamd looks pods up in its node-filtered cache (a miss costs an API
// read per ADD) and recycles the addresses of pods that do not exist. tag tells the
// runs of one IPAM apart in pod names. release deletes both again.
func preparePods(ctx context.Context, env *setupEnv, ipamName, tag string, n int, live *netnsSet) (pods []harness.Runtime, release func() error, err error) {
	runID := randomHex(3)
	var nss []*harness.NetNS
	var objs []*corev1.Pod
	release = func() error {
		var errs []error
		for _, ns := range nss {
			errs = append(errs, live.close(ns))
		}
		errs = append(errs, deletePods(ctx, env.kube, objs))
		nss, objs = nil, nil
		return errors.Join(errs...)
	}
	for i := range n {
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("bench-%s-%s-%d", ipamName, tag, i), Namespace: metav1.NamespaceDefault},
			Spec: corev1.PodSpec{
				NodeName:   benchNode,
				Containers: []corev1.Container{{Name: "pause", Image: "registry.k8s.io/pause:3.10"}},
			},
		}
		if err := env.kube.Create(ctx, pod); err != nil {
			return nil, release, fmt.Errorf("create pod %s: %w", pod.Name, err)
		}
		objs = append(objs, pod)
		ns, err := harness.NewNetNS(harness.UniqueName("bp"))
		if err != nil {
			return nil, release, err
		}
		if err := live.add(ns); err != nil {
			return nil, release, err
		}
		nss = append(nss, ns)
		pods = append(pods, harness.Runtime{
			ContainerID:  fmt.Sprintf("bench%s%04d", runID, i),
			NetNS:        ns.Path(),
			IfName:       "eth0",
			PodNamespace: pod.Namespace,
			PodName:      pod.Name,
			PodUID:       string(pod.UID),
		})
	}
	return pods, release, nil
}

// deletePods removes the Pod objects at once: no kubelet will ever confirm a
// graceful deletion.
func deletePods(ctx context.Context, kube client.Client, pods []*corev1.Pod) error {
	var errs []error
	for _, pod := range pods {
		if err := kube.Delete(ctx, pod, client.GracePeriodSeconds(0)); err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("delete pod %s: %w", pod.Name, err))
		}
	}
	return errors.Join(errs...)
}

// netnsSet tracks the pod namespaces alive right now, so an interrupt can close them.
// Once closeAll ran, a namespace added late (created while the interrupt was being
// handled) is closed at once instead of being forgotten.
type netnsSet struct {
	mu     sync.Mutex
	set    map[*harness.NetNS]struct{}
	closed bool
}

func (s *netnsSet) add(n *harness.NetNS) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		_ = n.Close()
		return errInterrupted
	}
	if s.set == nil {
		s.set = map[*harness.NetNS]struct{}{}
	}
	s.set[n] = struct{}{}
	return nil
}

func (s *netnsSet) close(n *harness.NetNS) error {
	s.mu.Lock()
	delete(s.set, n)
	s.mu.Unlock()
	return n.Close()
}

func (s *netnsSet) closeAll() {
	s.mu.Lock()
	all := s.set
	s.set, s.closed = nil, true
	s.mu.Unlock()
	for n := range all {
		_ = n.Close()
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails on Linux
	return hex.EncodeToString(b)
}
