package harness

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Tests only use 10.250.0.0/16, which nothing else on a developer machine or
// CI host is expected to route.

func TestControlPlane(t *testing.T) {
	RequireRoot(t)
	cp, err := StartControlPlane(ControlPlaneOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cp.Stop() })

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// The kubeconfig is what multus and ipamd get: it must work on its own.
	kcfg, err := clientcmd.BuildConfigFromFlags("", cp.KubeconfigPath)
	if err != nil {
		t.Fatalf("kubeconfig: %v", err)
	}
	kcs, err := kubernetes.NewForConfig(kcfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kcs.CoreV1().Namespaces().Get(ctx, "kube-system", metav1.GetOptions{}); err != nil {
		t.Fatalf("client from kubeconfig: %v", err)
	}

	c, err := cp.Client()
	if err != nil {
		t.Fatal(err)
	}

	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "harness-test"}}
	if err := c.Create(ctx, ns); err != nil {
		t.Fatalf("create namespace: %v", err)
	}
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-a"}}
	if err := c.Create(ctx, node); err != nil {
		t.Fatalf("create node: %v", err)
	}

	crd := &apiextensionsv1.CustomResourceDefinition{}
	if err := c.Get(ctx, client.ObjectKey{Name: "network-attachment-definitions.k8s.cni.cncf.io"}, crd); err != nil {
		t.Fatalf("NAD CRD: %v", err)
	}
	if !crdEstablished(crd) {
		t.Fatalf("NAD CRD not Established: %+v", crd.Status.Conditions)
	}

	const config = `{"cniVersion":"1.0.0","name":"macvlan-conf","type":"macvlan"}`
	nad := &unstructured.Unstructured{}
	nad.SetGroupVersionKind(schema.GroupVersionKind{Group: "k8s.cni.cncf.io", Version: "v1", Kind: "NetworkAttachmentDefinition"})
	nad.SetNamespace(ns.Name)
	nad.SetName("macvlan-conf")
	if err := unstructured.SetNestedField(nad.Object, config, "spec", "config"); err != nil {
		t.Fatal(err)
	}
	if err := c.Create(ctx, nad); err != nil {
		t.Fatalf("create NAD: %v", err)
	}
	got := &unstructured.Unstructured{}
	got.SetGroupVersionKind(nad.GroupVersionKind())
	if err := c.Get(ctx, client.ObjectKeyFromObject(nad), got); err != nil {
		t.Fatalf("get NAD: %v", err)
	}
	if s, _, _ := unstructured.NestedString(got.Object, "spec", "config"); s != config {
		t.Fatalf("NAD spec.config = %q, want %q", s, config)
	}

	if err := cp.Stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	if _, err := os.Stat(cp.Dir); !os.IsNotExist(err) {
		t.Fatalf("Stop left %s behind (stat: %v)", cp.Dir, err)
	}
	for _, p := range []*Process{cp.Etcd, cp.APIServer} {
		if exited, _ := p.Exited(); !exited {
			t.Fatalf("%s still running after Stop", p.Name)
		}
	}
}

func crdEstablished(crd *apiextensionsv1.CustomResourceDefinition) bool {
	for _, c := range crd.Status.Conditions {
		if c.Type == apiextensionsv1.Established && c.Status == apiextensionsv1.ConditionTrue {
			return true
		}
	}
	return false
}

// newNetNS creates a namespace removed when the test ends, pass or fail.
func newNetNS(t *testing.T, prefix string) *NetNS {
	t.Helper()
	ns, err := NewNetNS(UniqueName(prefix))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := ns.Close(); err != nil {
			t.Error(err)
		}
	})
	return ns
}

// newVeth creates a veth pair in ns (nil = root) removed when the test ends.
func newVeth(t *testing.T, ns *NetNS) *Veth {
	t.Helper()
	v, err := NewVethPairIn(ns, UniqueName("hva"), UniqueName("hvb"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := v.Close(); err != nil {
			t.Error(err)
		}
	})
	return v
}

func TestNetNSAndVeth(t *testing.T) {
	RequireRoot(t)
	ns := newNetNS(t, "hns")
	if _, err := os.Stat(ns.Path()); err != nil {
		t.Fatalf("netns file: %v", err)
	}
	if out, err := ns.Run("ip", "link", "show", "lo"); err != nil {
		t.Fatalf("ip netns exec: %v\n%s", err, out)
	}

	v := newVeth(t, nil)
	if err := v.MoveB(ns); err != nil {
		t.Fatal(err)
	}
	if _, err := Addrs("", v.A); err != nil {
		t.Fatalf("end A in root netns: %v", err)
	}
	if _, err := Addrs(ns.Path(), v.B); err != nil {
		t.Fatalf("end B in %s: %v", ns.Name(), err)
	}
	if err := v.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := Addrs("", v.A); !isLinkNotFound(err) {
		t.Fatalf("after Close, end A: got %v, want link not found", err)
	}
	if err := v.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}

	if err := ns.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(ns.Path()); !os.IsNotExist(err) {
		t.Fatalf("netns file still there after Close: %v", err)
	}
}

func TestPingBetweenNamespaces(t *testing.T) {
	RequireRoot(t)
	left, right := newNetNS(t, "hl"), newNetNS(t, "hr")
	v := newVeth(t, left)
	if err := v.MoveB(right); err != nil {
		t.Fatal(err)
	}
	for _, a := range []struct {
		ns          *NetNS
		ifName, ip4 string
		ip6         string
	}{
		{left, v.A, "10.250.0.1/24", "fd00:250::1/64"},
		{right, v.B, "10.250.0.2/24", "fd00:250::2/64"},
	} {
		for _, cidr := range []string{a.ip4, a.ip6} {
			if err := AddAddr(a.ns, a.ifName, cidr); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := Ping(left, "10.250.0.2", 3); err != nil {
		t.Fatal(err)
	}
	if err := PingFrom(right.Path(), "fd00:250::1", 3); err != nil {
		t.Fatal(err)
	}
}

// TestCNIMacvlan drives the real macvlan + host-local plugins through libcni
// over a veth "uplink", then checks the pod reaches the far end of it. The
// node-netns variant runs the plugins via nsenter inside a namespace that
// plays a second node, as multi-node e2e tests do.
func TestCNIMacvlan(t *testing.T) {
	RequireRoot(t)
	if err := EnsureTools("cni", "macvlan", "host-local"); err != nil {
		t.Fatal(err)
	}
	t.Run("root-netns", func(t *testing.T) { testCNIMacvlan(t, nil) })
	t.Run("node-netns", func(t *testing.T) { testCNIMacvlan(t, newNetNS(t, "hnode")) })
}

func testCNIMacvlan(t *testing.T, node *NetNS) {
	uplink := newVeth(t, node)
	peer := newNetNS(t, "hpeer")
	if err := uplink.MoveB(peer); err != nil {
		t.Fatal(err)
	}
	if err := AddAddr(peer, uplink.B, "10.250.9.254/24"); err != nil {
		t.Fatal(err)
	}
	pod := newNetNS(t, "hpod")

	stateDir := t.TempDir()
	conflistFor := func(master string) []byte {
		return []byte(fmt.Sprintf(`{
		  "cniVersion": "1.1.0",
		  "name": "harness-macvlan",
		  "plugins": [{
		    "type": "macvlan",
		    "master": %q,
		    "mode": "bridge",
		    "ipam": {
		      "type": "host-local",
		      "dataDir": %q,
		      "ranges": [[{"subnet": "10.250.9.0/24", "rangeStart": "10.250.9.10", "rangeEnd": "10.250.9.20"}]]
		    }
		  }]
		}`, master, filepath.Join(stateDir, "host-local")))
	}
	conflist := conflistFor(uplink.A)
	cni := &CNI{BinDirs: []string{CacheBinDir()}, CacheDir: filepath.Join(stateDir, "cache"), NodeNetNS: pathOf(node)}
	rt := Runtime{
		ContainerID: "harness-" + UniqueName(""), NetNS: pod.Path(), IfName: "eth0",
		PodNamespace: "default", PodName: "harness-pod", PodUID: "0b7c4e9a-0000-4000-8000-000000000001",
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	// A plugin failure must come back as the CNI error the plugin printed.
	_, err := cni.Add(ctx, conflistFor("hno-such-link"), rt)
	var cniErr *types.Error
	if !errors.As(err, &cniErr) || cniErr.Msg == "" {
		t.Fatalf("ADD with a missing master: got %v (%T), want a *types.Error", err, err)
	}

	res, err := cni.Add(ctx, conflist, rt)
	if err != nil {
		t.Fatalf("ADD: %v", err)
	}
	deleted := false
	t.Cleanup(func() {
		if !deleted {
			_ = cni.Del(context.Background(), conflist, rt)
		}
	})
	result, err := current.NewResultFromResult(res)
	if err != nil {
		t.Fatal(err)
	}
	if len(result.IPs) != 1 {
		t.Fatalf("ADD result has %d IPs, want 1: %s", len(result.IPs), mustJSON(result))
	}
	ip := result.IPs[0].Address.IP
	if _, subnet, _ := net.ParseCIDR("10.250.9.0/24"); !subnet.Contains(ip) {
		t.Fatalf("allocated %v, outside 10.250.9.0/24", ip)
	}
	if ok, err := HasAddr(pod.Path(), "eth0", ip); err != nil || !ok {
		t.Fatalf("%v not on eth0 in the pod netns (err %v)", ip, err)
	}

	if err := cni.Check(ctx, conflist, rt); err != nil {
		t.Fatalf("CHECK: %v", err)
	}
	if err := cni.Status(ctx, conflist); err != nil {
		t.Fatalf("STATUS: %v", err)
	}
	if err := cni.GC(ctx, conflist, []Attachment{{ContainerID: rt.ContainerID, IfName: rt.IfName}}); err != nil {
		t.Fatalf("GC: %v", err)
	}
	if ok, err := HasAddr(pod.Path(), "eth0", ip); err != nil || !ok {
		t.Fatalf("GC with the attachment marked valid removed it (err %v)", err)
	}
	if err := Ping(pod, "10.250.9.254", 3); err != nil {
		t.Fatalf("pod cannot reach the uplink peer: %v", err)
	}

	if err := cni.Del(ctx, conflist, rt); err != nil {
		t.Fatalf("DEL: %v", err)
	}
	deleted = true
	if _, err := Addrs(pod.Path(), "eth0"); !isLinkNotFound(err) {
		t.Fatalf("after DEL, eth0: got %v, want link not found", err)
	}
	if err := cni.Del(ctx, conflist, rt); err != nil {
		t.Fatalf("second DEL must be a no-op, got %v", err)
	}
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
