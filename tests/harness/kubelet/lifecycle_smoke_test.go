package kubelet_test

import (
	"context"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/tests/harness"
)

// The whole lifecycle on real parts: kube-controller-manager and kube-scheduler, two
// simulated nodes each with its own ipamd and kubelet stand-in, multus reading a real NAD.
// A StatefulSet's pods are scheduled, get a sandbox with an address from the pool on net1
// and a host veth to their node (multus and the plugins run in the node's netns), become
// Running and Ready (OrderedReady needs that for web-1), and when the set is deleted
// they go the way a kubelet lets them go: DEL, netns removed, then the pod object.
func TestLifecycleSmoke(t *testing.T) {
	cl := startCluster(t, "sim-1", "sim-2")
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	c := cl.c
	pool := cl.newPool(t, ctx, "smoke", "10.250.240.0/24")
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "smoke"}}
	if err := c.Create(ctx, ns); err != nil {
		t.Fatal(err)
	}
	cl.newNAD(t, ctx, ns.Name, "underlay", pool.Name)

	labels := map[string]string{"app": "web"}
	sts := &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: "web"},
		Spec: appsv1.StatefulSetSpec{
			Replicas: ptr.To[int32](2), ServiceName: "web",
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels,
					Annotations: map[string]string{"k8s.v1.cni.cncf.io/networks": "underlay"}},
				Spec: corev1.PodSpec{
					TerminationGracePeriodSeconds: ptr.To[int64](2),
					Containers:                    []corev1.Container{{Name: "c", Image: "pause"}},
					// one pod per node, so both nodes' ipamd and stand-in take part
					Affinity: &corev1.Affinity{PodAntiAffinity: &corev1.PodAntiAffinity{
						RequiredDuringSchedulingIgnoredDuringExecution: []corev1.PodAffinityTerm{{
							LabelSelector: &metav1.LabelSelector{MatchLabels: labels}, TopologyKey: corev1.LabelHostname}},
					}},
				},
			},
		},
	}
	if err := c.Create(ctx, sts); err != nil {
		t.Fatal(err)
	}
	eventually(t, ctx, "StatefulSet with 2 ready replicas", func(ctx context.Context) bool {
		return c.Get(ctx, client.ObjectKeyFromObject(sts), sts) == nil && sts.Status.ReadyReplicas == 2
	})

	var eps v1.EndpointList
	if err := c.List(ctx, &eps, client.InNamespace(ns.Name)); err != nil {
		t.Fatal(err)
	}
	var netnsPaths []string
	used := map[string]bool{}
	for _, name := range []string{"web-0", "web-1"} {
		pod := &corev1.Pod{}
		if err := c.Get(ctx, client.ObjectKey{Namespace: ns.Name, Name: name}, pod); err != nil {
			t.Fatal(err)
		}
		if pod.Status.Phase != corev1.PodRunning || pod.Status.HostIP == "" {
			t.Fatalf("%s: phase %s hostIP %q, want Running on a node", name, pod.Status.Phase, pod.Status.HostIP)
		}
		if used[pod.Spec.NodeName] {
			t.Fatalf("both pods on %s despite anti-affinity", pod.Spec.NodeName)
		}
		used[pod.Spec.NodeName] = true
		kl := cl.nodes[pod.Spec.NodeName]
		if kl == nil {
			t.Fatalf("%s bound to unknown node %q", name, pod.Spec.NodeName)
		}
		sb, ok := kl.Sandbox(ns.Name, name)
		if !ok || sb.PodUID != pod.UID || len(sb.ContainerID) != 64 {
			t.Fatalf("%s: sandbox %+v (found %v), want one for UID %s", name, sb, ok, pod.UID)
		}
		addr := endpointAddress(t, eps.Items, name, pool.Name, pod.Spec.NodeName)
		if !strings.HasPrefix(addr, "10.250.240.") {
			t.Fatalf("%s: net1 address %s not from pool %s", name, addr, pool.Name)
		}
		if has, err := harness.HasAddr(sb.NetNS.Path(), "net1", net.ParseIP(addr)); err != nil || !has {
			t.Fatalf("%s: net1 in %s does not carry %s (%v)", name, sb.NetNS.Path(), addr, err)
		}
		// multus and the plugins ran in the node's netns: the pod reaches its own node
		// through the host veth there, which a macvlan alone never does
		if err := harness.PingFrom(sb.NetNS.Path(), cl.nodeAddr[pod.Spec.NodeName], 3); err != nil {
			t.Fatalf("%s cannot reach its node %s through its host veth: %v", name, pod.Spec.NodeName, err)
		}
		netnsPaths = append(netnsPaths, sb.NetNS.Path())
	}

	if err := c.Delete(ctx, sts); err != nil {
		t.Fatal(err)
	}
	eventually(t, ctx, "pods and sandboxes gone after the StatefulSet was deleted", func(ctx context.Context) bool {
		var pods corev1.PodList
		if err := c.List(ctx, &pods, client.InNamespace(ns.Name)); err != nil {
			return false
		}
		return len(pods.Items) == 0 && len(cl.nodes["sim-1"].Sandboxes())+len(cl.nodes["sim-2"].Sandboxes()) == 0
	})
	for _, p := range netnsPaths {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("pod netns %s still exists (%v)", p, err)
		}
	}
	// DEL ran for both: the addresses went back and ipamd dropped the Endpoints
	eventually(t, ctx, "Endpoints gone after the pods went", func(ctx context.Context) bool {
		return c.List(ctx, &eps, client.InNamespace(ns.Name)) == nil && len(eps.Items) == 0
	})
}

// endpointAddress is the net1 IPv4 address the pod's Endpoint records, from pool. The
// Endpoint must name node: the pod's own node's ipamd served it (UNDERPOOL_IPAMD_SOCKET
// reached the plugin through multus), not some other node's.
func endpointAddress(t *testing.T, eps []v1.Endpoint, pod, pool, node string) string {
	t.Helper()
	for _, ep := range eps {
		if ep.Name != pod {
			continue
		}
		if ep.Status.Node != node {
			t.Fatalf("Endpoint of %s names node %q, want %q", pod, ep.Status.Node, node)
		}
		for _, itf := range ep.Status.Interfaces {
			for _, ip := range itf.IPs {
				if itf.Interface == "net1" && ip.Pool == pool {
					return strings.Split(ip.Address, "/")[0]
				}
			}
		}
	}
	t.Fatalf("no Endpoint records net1 of %s from pool %s: %+v", pod, pool, eps)
	return ""
}
