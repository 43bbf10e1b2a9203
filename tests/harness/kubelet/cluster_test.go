package kubelet_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/tests/harness"
	"github.com/underpool/underpool/tests/harness/kubelet"
)

// cluster is a control plane with the lifecycle controllers and simulated nodes, each
// with its own ipamd and kubelet stand-in, sharing one throw-away macvlan parent.
type cluster struct {
	dir    string
	cp     *harness.ControlPlane
	c      client.Client
	parent *harness.Veth
	nodes  map[string]*kubelet.Kubelet
	ipamds map[string]*harness.Ipamd
}

func startCluster(t *testing.T, nodeNames ...string) *cluster {
	t.Helper()
	harness.RequireRoot(t)
	if err := harness.EnsureTools("test", "kube-apiserver", "etcd", "kube-controller-manager", "kube-scheduler",
		"macvlan", "loopback", "multus"); err != nil {
		t.Fatal(err)
	}
	cl := &cluster{dir: t.TempDir(), nodes: map[string]*kubelet.Kubelet{}, ipamds: map[string]*harness.Ipamd{}}
	bin := filepath.Join(cl.dir, "bin")
	if err := harness.BuildProjectBinaries(bin); err != nil {
		t.Fatal(err)
	}
	var err error
	cl.cp, err = harness.StartControlPlane(harness.ControlPlaneOptions{Lifecycle: true, LogDir: filepath.Join(cl.dir, "logs")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cl.cp.Stop() })
	if cl.c, err = cl.cp.Client(v1.AddToScheme); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			logs := []string{"logs/kube-controller-manager.log", "kubelets.log"}
			for _, n := range nodeNames {
				logs = append(logs, "ipamd-"+n+".log")
			}
			for _, f := range logs {
				t.Logf("end of %s:\n%s", f, tailFile(filepath.Join(cl.dir, f), 30))
			}
		}
	})
	if cl.parent, err = harness.NewVethPair(harness.UniqueName("kla"), harness.UniqueName("klb")); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cl.parent.Close() })
	conflist, err := kubelet.MultusConflist(kubelet.MultusConfig{Kubeconfig: cl.cp.KubeconfigPath,
		BinDirs: []string{bin, harness.CacheBinDir()}, Dir: filepath.Join(cl.dir, "multus")})
	if err != nil {
		t.Fatal(err)
	}
	logFile, err := os.Create(filepath.Join(cl.dir, "kubelets.log"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { logFile.Close() })
	for _, node := range nodeNames {
		ipamdOpts := harness.DefaultIpamdOptions(bin, cl.cp.KubeconfigPath, node, cl.dir)
		kl, err := kubelet.New(kubelet.Config{
			NodeName: node, RestConfig: cl.cp.Config, Conflist: conflist, IpamdSocket: ipamdOpts.Socket,
			CNI: harness.CNI{BinDirs: []string{bin, harness.CacheBinDir()},
				CacheDir: filepath.Join(cl.dir, "cni-cache"), Stderr: logFile, Env: []string{kubelet.LogDirEnv + "=" + cl.dir}},
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
		cl.nodes[node] = kl
		ipamdOpts.ExtraArgs = []string{"--gc-interval=0"}
		d, err := harness.StartIpamd(ipamdOpts)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = d.Stop() })
		cl.ipamds[node] = d
	}
	return cl
}

// newNAD creates the underpool-over-macvlan network in namespace ns. The socket it names
// is never dialled: each node's stand-in gives its plugins UNDERPOOL_IPAMD_SOCKET.
func (cl *cluster) newNAD(t *testing.T, ctx context.Context, ns, name, pool string) {
	t.Helper()
	conf, _ := json.Marshal(map[string]any{
		"cniVersion": "1.0.0", "name": name,
		"plugins": []any{map[string]any{
			"type":             "underpool",
			"delegate":         map[string]any{"type": "macvlan", "master": cl.parent.A, "mode": "bridge"},
			"ipam":             map[string]any{"socket": "/nonexistent/ipamd.sock", "ipv4Pools": []string{pool}},
			"logFile":          filepath.Join(cl.dir, "plugin.log"),
			"hostConnectivity": map[string]any{"enabled": false}, // plugins run in the root netns
		}},
	})
	nad := &unstructured.Unstructured{}
	nad.SetGroupVersionKind(schema.GroupVersionKind{Group: "k8s.cni.cncf.io", Version: "v1", Kind: "NetworkAttachmentDefinition"})
	nad.SetNamespace(ns)
	nad.SetName(name)
	nad.Object["spec"] = map[string]any{"config": string(conf)}
	if err := cl.c.Create(ctx, nad); err != nil {
		t.Fatal(err)
	}
}

func (cl *cluster) newPool(t *testing.T, ctx context.Context, name, subnet string) *v1.IPPool {
	t.Helper()
	pool := &v1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: name, Finalizers: []string{v1.PoolProtection}}, Spec: v1.IPPoolSpec{Subnet: subnet}}
	if err := cl.c.Create(ctx, pool); err != nil {
		t.Fatal(err)
	}
	return pool
}

// eventually polls cond every 200 ms until it holds or ctx ends; what names it in the failure.
func eventually(t *testing.T, ctx context.Context, what string, cond func(ctx context.Context) bool) {
	t.Helper()
	if err := wait.PollUntilContextCancel(ctx, 200*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		return cond(ctx), nil
	}); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
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
