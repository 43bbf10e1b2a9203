package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/underpool/underpool/ipamd/api/v1"
	"github.com/underpool/underpool/tests/harness"
)

// Through the multus v4 thin plugin, as a cluster runs it: a real NetworkAttachmentDefinition
// whose plugin is underpool and a real Pod naming it. The pod's net1 gets its address from
// the pool the NAD names, and multus reports it in the network-status annotation.
func TestMultusAttachesNetFromNAD(t *testing.T) {
	v4net, _, _ := nextSubnet()
	pool := newPool(t, v1.IPPoolSpec{Subnet: v4net})
	ns := newNamespace(t)
	nadConf := netConf{Name: "underlay", Master: newParent(t), IPv4Pools: []string{pool.Name}}.conflist(t)
	nad := &unstructured.Unstructured{}
	nad.SetGroupVersionKind(schema.GroupVersionKind{Group: "k8s.cni.cncf.io", Version: "v1", Kind: "NetworkAttachmentDefinition"})
	nad.SetNamespace(ns)
	nad.SetName("underlay")
	nad.Object["spec"] = map[string]any{"config": string(nadConf)}
	if err := suite.client.Create(ctx(t), nad); err != nil {
		t.Fatalf("creating NAD: %v", err)
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "db-0",
			Annotations: map[string]string{"k8s.v1.cni.cncf.io/networks": "underlay"}},
		Spec: corev1.PodSpec{NodeName: nodeName, Containers: []corev1.Container{{Name: "c", Image: "pause"}}},
	}
	if err := suite.client.Create(ctx(t), pod); err != nil {
		t.Fatalf("creating Pod: %v", err)
	}
	netns := newPodNS(t)
	rt := harness.Runtime{ContainerID: "ctr-multus-db-0", NetNS: netns.Path(), IfName: "eth0",
		PodNamespace: ns, PodName: pod.Name, PodUID: string(pod.UID)}
	conf := multusConflist(t)
	if _, err := suite.cni.Add(ctx(t), conf, rt); err != nil {
		t.Fatalf("ADD through multus: %v", err)
	}

	eps := endpoints(t, ns)
	if len(eps) != 1 || len(eps[0].Status.Interfaces) != 1 || eps[0].Status.Interfaces[0].Interface != "net1" ||
		eps[0].Status.PodUID != string(pod.UID) || eps[0].Status.Interfaces[0].Network != "underlay" {
		t.Fatalf("Endpoint for the pod's net1 = %+v", eps)
	}
	ip := eps[0].Status.Interfaces[0].IPs[0]
	if ip.Pool != pool.Name || !strings.HasPrefix(ip.Address, strings.TrimSuffix(v4net, "0/24")) {
		t.Fatalf("net1 address %+v is not from pool %s (%s)", ip, pool.Name, v4net)
	}
	addr := strings.Split(ip.Address, "/")[0]
	if ok, err := harness.HasAddr(netns.Path(), "net1", parseIP(t, addr)); err != nil || !ok {
		t.Fatalf("net1 in the pod does not carry %s (%v)", addr, err)
	}
	if err := suite.client.Get(ctx(t), client.ObjectKeyFromObject(pod), pod); err != nil {
		t.Fatal(err)
	}
	var status []struct {
		Name      string   `json:"name"`
		Interface string   `json:"interface"`
		IPs       []string `json:"ips"`
	}
	if err := json.Unmarshal([]byte(pod.Annotations["k8s.v1.cni.cncf.io/network-status"]), &status); err != nil {
		t.Fatalf("network-status annotation: %v (%q)", err, pod.Annotations["k8s.v1.cni.cncf.io/network-status"])
	}
	found := false
	for _, s := range status {
		if s.Interface == "net1" && len(s.IPs) == 1 && s.IPs[0] == addr {
			found = true
		}
	}
	if !found {
		t.Fatalf("multus network-status does not report net1 with %s: %+v", addr, status)
	}

	if err := suite.cni.Del(ctx(t), conf, rt); err != nil {
		t.Fatalf("DEL through multus: %v", err)
	}
	requireEmpty(t, pool.Name, ns)
}

// multusConflist is the thin plugin with loopback standing in for the cluster network.
// Multus takes one binDir, so ours and the peers' binaries are linked into one folder.
func multusConflist(t *testing.T) []byte {
	t.Helper()
	binDir := filepath.Join(suite.dir, "multus-bin")
	if _, err := os.Stat(binDir); err != nil {
		if err := os.MkdirAll(binDir, 0o755); err != nil {
			t.Fatal(err)
		}
		for _, dir := range []string{harness.CacheBinDir(), suite.bin} {
			entries, _ := os.ReadDir(dir)
			for _, e := range entries {
				_ = os.Symlink(filepath.Join(dir, e.Name()), filepath.Join(binDir, e.Name()))
			}
		}
	}
	return mustJSON(t, map[string]any{
		"cniVersion": "1.0.0", "name": "multus-e2e",
		"plugins": []any{map[string]any{
			"type": "multus", "kubeconfig": suite.cp.KubeconfigPath,
			"cniDir": filepath.Join(suite.dir, "multus-cache"), "binDir": binDir,
			"logFile": filepath.Join(suite.dir, "multus.log"), "logLevel": "error",
			"delegates": []any{map[string]any{"cniVersion": "1.0.0", "name": "default",
				"plugins": []any{map[string]any{"type": "loopback"}}}},
		}},
	})
}

// multus' "default-route" in the networks annotation puts the pod's default route on the
// underlay interface through the named gateway, even when the network config leaves the
// default route alone (defaultRoute: false).
func TestMultusDefaultRouteSelection(t *testing.T) {
	v4net, _, _ := nextSubnet()
	gw := strings.TrimSuffix(v4net, "0/24") + "1"
	pool := newPool(t, v1.IPPoolSpec{Subnet: v4net, Gateway: gw})
	ns := newNamespace(t)
	var conf map[string]any
	if err := json.Unmarshal(netConf{Name: "underlay-dr", Master: newParent(t), IPv4Pools: []string{pool.Name}}.conflist(t), &conf); err != nil {
		t.Fatal(err)
	}
	conf["plugins"].([]any)[0].(map[string]any)["defaultRoute"] = false
	// multus v4.2.2 rewrites the default route only in results it can parse: up to 1.0.0
	conf["cniVersion"] = "1.0.0"
	nad := &unstructured.Unstructured{}
	nad.SetGroupVersionKind(schema.GroupVersionKind{Group: "k8s.cni.cncf.io", Version: "v1", Kind: "NetworkAttachmentDefinition"})
	nad.SetNamespace(ns)
	nad.SetName("underlay-dr")
	nad.Object["spec"] = map[string]any{"config": string(mustJSON(t, conf))}
	if err := suite.client.Create(ctx(t), nad); err != nil {
		t.Fatalf("creating NAD: %v", err)
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "dr-0", Annotations: map[string]string{
			"k8s.v1.cni.cncf.io/networks": `[{"name":"underlay-dr","default-route":["` + gw + `"]}]`}},
		Spec: corev1.PodSpec{NodeName: nodeName, Containers: []corev1.Container{{Name: "c", Image: "pause"}}},
	}
	if err := suite.client.Create(ctx(t), pod); err != nil {
		t.Fatal(err)
	}
	netns := newPodNS(t)
	rt := harness.Runtime{ContainerID: "ctr-multus-dr-0", NetNS: netns.Path(), IfName: "eth0",
		PodNamespace: ns, PodName: pod.Name, PodUID: string(pod.UID)}
	mconf := multusConflist(t)
	if _, err := suite.cni.Add(ctx(t), mconf, rt); err != nil {
		t.Fatalf("ADD through multus: %v", err)
	}
	requireDefaultRoute(t, netns, gw)
	if err := suite.cni.Del(ctx(t), mconf, rt); err != nil {
		t.Fatalf("DEL through multus: %v", err)
	}
	requireEmpty(t, pool.Name, ns)
}
