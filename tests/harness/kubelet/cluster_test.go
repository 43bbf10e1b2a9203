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
// with its own ipamd, kubelet stand-in and netns standing for it; every node's uplink eth1
// is a port of one bridge in a netns of its own (the segment), so macvlans on different
// nodes share an L2 segment as they would on real machines.
type cluster struct {
	dir     string
	cp      *harness.ControlPlane
	c       client.Client
	segment *harness.NetNS
	nodes   map[string]*kubelet.Kubelet
	ipamds  map[string]*harness.Ipamd
	// nodeNS and nodeAddr are each node's netns and its own address on eth1
	nodeNS   map[string]*harness.NetNS
	nodeAddr map[string]string
}

// uplink is the name of every node's uplink, the NAD's master.
const uplink = "eth1"

func startCluster(t *testing.T, nodeNames ...string) *cluster {
	t.Helper()
	harness.RequireRoot(t)
	if err := harness.EnsureTools("test", "kube-apiserver", "etcd", "kube-controller-manager", "kube-scheduler",
		"macvlan", "loopback", "multus"); err != nil {
		t.Fatal(err)
	}
	cl := &cluster{dir: t.TempDir(), nodes: map[string]*kubelet.Kubelet{}, ipamds: map[string]*harness.Ipamd{},
		nodeNS: map[string]*harness.NetNS{}, nodeAddr: map[string]string{}}
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
	if cl.segment, err = harness.NewNetNS(harness.UniqueName("kls")); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cl.segment.Close() })
	if err := harness.NewBridge(cl.segment, "seg0"); err != nil {
		t.Fatal(err)
	}
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
	for i, node := range nodeNames {
		nodeNS := cl.newNode(t, node, fmt.Sprintf("10.250.238.%d", i+2))
		ipamdOpts := harness.DefaultIpamdOptions(bin, cl.cp.KubeconfigPath, node, cl.dir)
		kl, err := kubelet.New(kubelet.Config{
			NodeName: node, RestConfig: cl.cp.Config, Conflist: conflist, IpamdSocket: ipamdOpts.Socket,
			NodeNetNS: nodeNS, NodeIP: cl.nodeAddr[node],
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

// newNode makes the netns standing for a node: loopback up, uplink eth1 on the segment
// carrying the node's own address addr/24 (what a pod reaches through its host veth).
func (cl *cluster) newNode(t *testing.T, name, addr string) *harness.NetNS {
	t.Helper()
	nodeNS, err := harness.NewNetNS(harness.UniqueName("kln"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = nodeNS.Close() })
	port := harness.UniqueName("klp")
	v, err := harness.NewVethPairIn(nodeNS, uplink, port)
	if err == nil {
		err = v.MoveB(cl.segment)
	}
	if err == nil {
		err = harness.SetMaster(cl.segment, port, "seg0")
	}
	if err == nil {
		err = harness.AddAddr(nodeNS, uplink, addr+"/24")
	}
	if err != nil {
		t.Fatalf("node %s: %v", name, err)
	}
	cl.nodeNS[name], cl.nodeAddr[name] = nodeNS, addr
	return nodeNS
}

// newNAD creates the underpool-over-macvlan network in namespace ns. The socket it names
// is never dialled: each node's stand-in gives its plugins UNDERPOOL_IPAMD_SOCKET. Host
// connectivity keeps its default: the plugins run in the node's netns, where the pod's
// host veth goes.
func (cl *cluster) newNAD(t *testing.T, ctx context.Context, ns, name, pool string) {
	t.Helper()
	conf, _ := json.Marshal(map[string]any{
		"cniVersion": "1.0.0", "name": name,
		"plugins": []any{map[string]any{
			"type":     "underpool",
			"delegate": map[string]any{"type": "macvlan", "master": uplink, "mode": "bridge"},
			"ipam":     map[string]any{"socket": "/nonexistent/ipamd.sock", "ipv4Pools": []string{pool}},
			"logFile":  filepath.Join(cl.dir, "plugin.log"),
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
