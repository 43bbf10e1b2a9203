package guest

import (
	"path/filepath"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/tests/e2e"
	"github.com/underpool/underpool/tests/harness"
)

// The objects and configs the tests make, after tests/e2e's builders, which differ here:
// pools stay when a test ends (the host checks every pool once the VM is gone, and the
// control plane goes with the host's test), names start with "vm-", the plugins find
// ipamd's socket at its default path and log under logDir.

// newPool creates an IPPool (through the controller's webhook on the host).
func newPool(t *testing.T, spec v1.IPPoolSpec) *v1.IPPool {
	t.Helper()
	pool := &v1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: "vm-" + rand.String(6)}, Spec: spec}
	if err := suite.client.Create(ctx(t), pool); err != nil {
		t.Fatalf("creating IPPool: %v", err)
	}
	return pool
}

// newNamespace creates a namespace for the test's Endpoints.
func newNamespace(t *testing.T) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "vm-" + rand.String(6)}}
	if err := suite.client.Create(ctx(t), ns); err != nil {
		t.Fatalf("creating namespace: %v", err)
	}
	return ns.Name
}

// netConf is the underpool meta-plugin as a conflist with one delegate.
type netConf struct {
	Delegate  map[string]any
	IPv4Pools []string
	IPv6Pools []string
	Extra     map[string]any // top-level plugin fields, set last
}

func (c netConf) conflist(t *testing.T) []byte {
	t.Helper()
	plugin := map[string]any{
		"type":         "underpool",
		"capabilities": map[string]bool{"ips": true, "mac": true},
		"delegate":     c.Delegate,
		"ipam":         map[string]any{"ipv4Pools": c.IPv4Pools, "ipv6Pools": c.IPv6Pools},
		"logFile":      filepath.Join(logDir, "plugin.log"),
	}
	for k, v := range c.Extra {
		plugin[k] = v
	}
	return e2e.MustJSON(t, map[string]any{"cniVersion": "1.1.0", "name": "vm-" + rand.String(5), "plugins": []any{plugin}})
}

// runtimeFor describes a pod attachment as a runtime would, for a pod that exists only as
// CNI_ARGS.
func runtimeFor(pod *harness.NetNS, namespace, name, ifName string) harness.Runtime {
	return harness.Runtime{ContainerID: "ctr-" + name + "-" + rand.String(4), NetNS: pod.Path(), IfName: ifName,
		PodNamespace: namespace, PodName: name, PodUID: "uid-" + name}
}

// nodeCNI runs the plugins as a runtime on a node whose network namespace is node: every
// link, route and host veth they make on the node side lands there, away from eth0, which
// ipamd needs to reach the apiserver.
func nodeCNI(t *testing.T, node *harness.NetNS) *harness.CNI {
	return &harness.CNI{BinDirs: []string{BinDir}, CacheDir: t.TempDir(), NodeNetNS: node.Path()}
}
