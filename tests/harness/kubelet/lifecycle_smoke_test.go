package kubelet_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/underpool/underpool/ipamd/api/v1"
	"github.com/underpool/underpool/tests/harness"
	"github.com/underpool/underpool/tests/harness/kubelet"
)

// The whole lifecycle on real parts: kube-controller-manager and kube-scheduler, two
// simulated nodes each with its own ipamd and kubelet stand-in, multus reading a real NAD.
// A StatefulSet's pods are scheduled, get a sandbox with an address from the pool on net1,
// become Running and Ready (OrderedReady needs that for web-1), and when the set is deleted
// they go the way a kubelet lets them go: DEL, netns removed, then the pod object.
func TestLifecycleSmoke(t *testing.T) {
	harness.RequireRoot(t)
	if err := harness.EnsureTools("test", "kube-apiserver", "etcd", "kube-controller-manager", "kube-scheduler",
		"macvlan", "loopback", "multus"); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "bin")
	if err := harness.BuildProjectBinaries(bin); err != nil {
		t.Fatal(err)
	}
	cp, err := harness.StartControlPlane(harness.ControlPlaneOptions{Lifecycle: true, LogDir: filepath.Join(dir, "logs")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cp.Stop() })
	c, err := cp.Client(v1.AddToScheme)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	defer func() {
		if t.Failed() {
			for _, f := range []string{"logs/kube-controller-manager.log", "kubelets.log", "ipamd-sim-1.log", "ipamd-sim-2.log"} {
				t.Logf("end of %s:\n%s", f, tailFile(filepath.Join(dir, f), 30))
			}
		}
	}()

	parent, err := harness.NewVethPair(harness.UniqueName("kla"), harness.UniqueName("klb"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = parent.Close() })
	conflist, err := kubelet.MultusConflist(kubelet.MultusConfig{Kubeconfig: cp.KubeconfigPath,
		BinDirs: []string{bin, harness.CacheBinDir()}, Dir: filepath.Join(dir, "multus")})
	if err != nil {
		t.Fatal(err)
	}
	logFile, err := os.Create(filepath.Join(dir, "kubelets.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()

	nodes := map[string]*kubelet.Kubelet{}
	for _, node := range []string{"sim-1", "sim-2"} {
		ipamdOpts := harness.DefaultIpamdOptions(bin, cp.KubeconfigPath, node, dir)
		kl, err := kubelet.New(kubelet.Config{
			NodeName: node, RestConfig: cp.Config, Conflist: conflist, IpamdSocket: ipamdOpts.Socket,
			CNI: harness.CNI{BinDirs: []string{bin, harness.CacheBinDir()}, CacheDir: filepath.Join(dir, "cni-cache"), Stderr: logFile},
			Log: logFile,
		})
		if err != nil {
			t.Fatal(err)
		}
		// the Node is registered by Start, before its ipamd starts (ipamd reads its Node)
		if err := kl.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = kl.Close() })
		nodes[node] = kl
		ipamdOpts.ExtraArgs = []string{"--gc-interval=0"}
		d, err := harness.StartIpamd(ipamdOpts)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = d.Stop() })
	}

	pool := &v1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: "smoke"}, Spec: v1.IPPoolSpec{Subnet: "10.250.240.0/24"}}
	if err := c.Create(ctx, pool); err != nil {
		t.Fatal(err)
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "smoke"}}
	if err := c.Create(ctx, ns); err != nil {
		t.Fatal(err)
	}
	// The NAD names no socket that matters: each node's stand-in gives its plugins
	// UNDERPOOL_IPAMD_SOCKET, so this one must never be dialled.
	nadConf, _ := json.Marshal(map[string]any{
		"cniVersion": "1.0.0", "name": "underlay",
		"plugins": []any{map[string]any{
			"type":             "underpool",
			"delegate":         map[string]any{"type": "macvlan", "master": parent.A, "mode": "bridge"},
			"ipam":             map[string]any{"socket": "/nonexistent/ipamd.sock", "ipv4Pools": []string{pool.Name}},
			"logFile":          filepath.Join(dir, "plugin.log"),
			"hostConnectivity": map[string]any{"enabled": false}, // plugins run in the root netns
		}},
	})
	nad := &unstructured.Unstructured{}
	nad.SetGroupVersionKind(schema.GroupVersionKind{Group: "k8s.cni.cncf.io", Version: "v1", Kind: "NetworkAttachmentDefinition"})
	nad.SetNamespace(ns.Name)
	nad.SetName("underlay")
	nad.Object["spec"] = map[string]any{"config": string(nadConf)}
	if err := c.Create(ctx, nad); err != nil {
		t.Fatal(err)
	}

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
	if err := wait.PollUntilContextCancel(ctx, 200*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		err := c.Get(ctx, client.ObjectKeyFromObject(sts), sts)
		return err == nil && sts.Status.ReadyReplicas == 2, nil
	}); err != nil {
		t.Fatalf("StatefulSet never had 2 ready replicas (status %+v): %v", sts.Status, err)
	}

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
		kl := nodes[pod.Spec.NodeName]
		if kl == nil {
			t.Fatalf("%s bound to unknown node %q", name, pod.Spec.NodeName)
		}
		sb, ok := kl.Sandbox(ns.Name, name)
		if !ok || sb.PodUID != pod.UID || len(sb.ContainerID) != 64 {
			t.Fatalf("%s: sandbox %+v (found %v), want one for UID %s", name, sb, ok, pod.UID)
		}
		addr := endpointAddress(t, eps.Items, name, pool.Name)
		if !strings.HasPrefix(addr, "10.250.240.") {
			t.Fatalf("%s: net1 address %s not from pool %s", name, addr, pool.Name)
		}
		if has, err := harness.HasAddr(sb.NetNS.Path(), "net1", net.ParseIP(addr)); err != nil || !has {
			t.Fatalf("%s: net1 in %s does not carry %s (%v)", name, sb.NetNS.Path(), addr, err)
		}
		netnsPaths = append(netnsPaths, sb.NetNS.Path())
	}

	if err := c.Delete(ctx, sts); err != nil {
		t.Fatal(err)
	}
	if err := wait.PollUntilContextCancel(ctx, 200*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		var pods corev1.PodList
		if err := c.List(ctx, &pods, client.InNamespace(ns.Name)); err != nil {
			return false, nil
		}
		live := len(nodes["sim-1"].Sandboxes()) + len(nodes["sim-2"].Sandboxes())
		return len(pods.Items) == 0 && live == 0, nil
	}); err != nil {
		t.Fatalf("pods or sandboxes remain after the StatefulSet was deleted: %v", err)
	}
	for _, p := range netnsPaths {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("pod netns %s still exists (%v)", p, err)
		}
	}
	// DEL ran for both: the addresses went back and ipamd dropped the Endpoints
	if err := wait.PollUntilContextCancel(ctx, 200*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		if err := c.List(ctx, &eps, client.InNamespace(ns.Name)); err != nil {
			return false, nil
		}
		return len(eps.Items) == 0, nil
	}); err != nil {
		t.Fatalf("Endpoints remain after the pods went: %+v", eps.Items)
	}
}

// endpointAddress is the net1 IPv4 address the pod's Endpoint records, from pool.
func endpointAddress(t *testing.T, eps []v1.Endpoint, pod, pool string) string {
	t.Helper()
	for _, ep := range eps {
		if ep.Name != pod {
			continue
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

func tailFile(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return fmt.Sprintln(strings.Join(lines, "\n"))
}
