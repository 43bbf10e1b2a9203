package e2e

import (
	"os"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/underpool/underpool/ipamd/rpc"
)

// releaseAll releases every attachment recorded in the namespaces.
func releaseAll(t *testing.T, namespaces ...string) {
	t.Helper()
	for _, ns := range namespaces {
		for _, ep := range endpoints(t, ns) {
			for _, itf := range ep.Status.Interfaces {
				if err := suite.ipamd.Client.Release(ctx(t), &rpc.ReleaseRequest{ContainerID: itf.ContainerID,
					Pod: rpc.Pod{Namespace: ns, Name: ep.Name}}); err != nil {
					t.Fatalf("release %s/%s: %v", ns, ep.Name, err)
				}
			}
		}
		if eps := endpoints(t, ns); len(eps) != 0 {
			t.Fatalf("Endpoints left in %s: %+v", ns, eps)
		}
	}
}

func waitPodGone(t *testing.T, pod *corev1.Pod) {
	t.Helper()
	waitFor(t, "pod "+pod.Name+" to be gone", func() bool {
		err := suite.client.Get(ctx(t), client.ObjectKeyFromObject(pod), &corev1.Pod{})
		return isNotFound(err)
	})
}

// waitFor polls a condition; it bounds the wait generously and never asserts on timing.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for i := 0; i < 600; i++ {
		if cond() {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}

func linkMAC(t *testing.T, nsPath, ifName string) string {
	t.Helper()
	h, err := netlinkHandleAt(nsPath)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	l, err := h.LinkByName(ifName)
	if err != nil {
		t.Fatal(err)
	}
	return l.Attrs().HardwareAddr.String()
}

// netlinkHandleAt opens a netlink handle inside a netns without switching this thread.
func netlinkHandleAt(nsPath string) (*netlink.Handle, error) {
	ns, err := netns.GetFromPath(nsPath)
	if err != nil {
		return nil, err
	}
	defer ns.Close()
	return netlink.NewHandleAt(ns)
}

func harnessTail(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}
