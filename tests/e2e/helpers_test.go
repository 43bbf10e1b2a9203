package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/underpool/underpool/ipamd/api/v1"
	"github.com/underpool/underpool/tests/harness"
)

var subnetSeq atomic.Int32

// nextSubnet gives each test its own 10.250.X.0/24 and fd00:250:0:X::/64 so tests never
// share addresses.
func nextSubnet() (v4, v6 string, third int32) {
	x := 10 + subnetSeq.Add(1)
	return fmt.Sprintf("10.250.%d.0/24", x), fmt.Sprintf("fd00:250:0:%x::/64", x), x
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	return c
}

// newPool creates an IPPool and removes it when the test ends.
func newPool(t *testing.T, spec v1.IPPoolSpec) *v1.IPPool {
	t.Helper()
	pool := &v1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: "pool-" + rand.String(6)}, Spec: spec}
	if err := suite.client.Create(ctx(t), pool); err != nil {
		t.Fatalf("creating IPPool: %v", err)
	}
	t.Cleanup(func() { _ = suite.client.Delete(context.Background(), pool) })
	return pool
}

// newNamespace creates a namespace for the test's pods and Endpoints.
func newNamespace(t *testing.T) string {
	t.Helper()
	return newNamespaceWith(t, nil)
}

func newNamespaceWith(t *testing.T, annotations map[string]string) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "e2e-" + rand.String(6), Annotations: annotations}}
	if err := suite.client.Create(ctx(t), ns); err != nil {
		t.Fatalf("creating namespace: %v", err)
	}
	return ns.Name
}

// freshPool reads the pool from the API, not from any cache.
func freshPool(t *testing.T, name string) *v1.IPPool {
	t.Helper()
	p := &v1.IPPool{}
	if err := suite.client.Get(ctx(t), client.ObjectKey{Name: name}, p); err != nil {
		t.Fatalf("reading IPPool %s: %v", name, err)
	}
	return p
}

func endpoints(t *testing.T, namespace string) []v1.Endpoint {
	t.Helper()
	var list v1.EndpointList
	if err := suite.client.List(ctx(t), &list, client.InNamespace(namespace)); err != nil {
		t.Fatalf("listing Endpoints: %v", err)
	}
	return list.Items
}

// requireEmpty asserts the pool holds nothing and the namespace has no Endpoints.
func requireEmpty(t *testing.T, pool, namespace string) {
	t.Helper()
	p := freshPool(t, pool)
	if p.Status.AllocatedIPCount != 0 || p.Status.Allocated != "" {
		t.Errorf("pool %s still holds %d addresses (%q)", pool, p.Status.AllocatedIPCount, p.Status.Allocated)
	}
	if eps := endpoints(t, namespace); len(eps) != 0 {
		t.Errorf("namespace %s still has %d Endpoints: %+v", namespace, len(eps), eps)
	}
}

// newParent makes a throw-away veth pair in the root netns; macvlans hang off end A.
func newParent(t *testing.T) string {
	t.Helper()
	a, b := harness.UniqueName("upa"), harness.UniqueName("upb")
	v, err := harness.NewVethPair(a, b)
	if err != nil {
		t.Fatalf("veth parent: %v", err)
	}
	t.Cleanup(func() { _ = v.Close() })
	return a
}

func newPodNS(t *testing.T) *harness.NetNS {
	t.Helper()
	n, err := harness.NewNetNS(harness.UniqueName("pod"))
	if err != nil {
		t.Fatalf("netns: %v", err)
	}
	t.Cleanup(func() { _ = n.Close() })
	return n
}

// netConf is the underpool meta-plugin over macvlan, as a conflist.
type netConf struct {
	Name      string
	Master    string
	Mode      string
	IPv4Pools []string
	IPv6Pools []string
	Socket    string
}

func (c netConf) conflist(t *testing.T) []byte {
	t.Helper()
	if c.Mode == "" {
		c.Mode = "bridge"
	}
	if c.Socket == "" {
		c.Socket = suite.ipamd.Options.Socket
	}
	if c.Name == "" {
		c.Name = "under-" + rand.String(5)
	}
	return mustJSON(t, map[string]any{
		"cniVersion": "1.1.0", "name": c.Name,
		"plugins": []any{map[string]any{
			"type":         "underpool",
			"capabilities": map[string]bool{"ips": true, "mac": true},
			"delegate":     map[string]any{"type": "macvlan", "master": c.Master, "mode": c.Mode},
			"ipam":         map[string]any{"socket": c.Socket, "ipv4Pools": c.IPv4Pools, "ipv6Pools": c.IPv6Pools},
			"logFile":      filepath.Join(suite.dir, "plugin.log"),
			// these tests run the plugin in the root netns, which must not get host veths or
			// routes: host connectivity has its own test in a netns standing for the node
			"hostConnectivity": map[string]any{"enabled": false},
		}},
	})
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// runtimeFor describes a pod attachment as a Kubernetes runtime would.
func runtimeFor(pod *harness.NetNS, namespace, name, ifName string) harness.Runtime {
	return harness.Runtime{ContainerID: "ctr-" + name, NetNS: pod.Path(), IfName: ifName,
		PodNamespace: namespace, PodName: name, PodUID: "uid-" + name}
}

// ipsOf returns the result's addresses by family.
func ipsOf(t *testing.T, r types.Result) (v4, v6 []net.IP) {
	t.Helper()
	res, err := current.GetResult(r)
	if err != nil {
		t.Fatalf("result: %v", err)
	}
	for _, ip := range res.IPs {
		if ip.Address.IP.To4() != nil {
			v4 = append(v4, ip.Address.IP)
		} else {
			v6 = append(v6, ip.Address.IP)
		}
	}
	return v4, v6
}

func isNotFound(err error) bool { return apierrors.IsNotFound(err) }

func parseIP(t *testing.T, s string) net.IP {
	t.Helper()
	ip := net.ParseIP(s)
	if ip == nil {
		t.Fatalf("%q is not an IP", s)
	}
	return ip
}
