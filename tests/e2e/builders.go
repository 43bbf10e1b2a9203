package e2e

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/tests/harness"
)

// One builder per kind of object the tests make: API objects (pools, Subnets, ReservedIPs,
// namespaces, NADs, pods and their workloads), network configs and runtime descriptions.
// A builder that creates something removes it when the test ends, unless the test's own
// namespace takes it along.

// NewPool creates an IPPool and removes it when the test ends.
func NewPool(t *testing.T, spec v1.IPPoolSpec) *v1.IPPool {
	t.Helper()
	pool := &v1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: "pool-" + rand.String(6)}, Spec: spec}
	create(t, pool)
	return pool
}

// NewSubnet creates a Subnet and removes it when the test ends; created before a test's
// pools, it is removed after them.
func NewSubnet(t *testing.T, spec v1.SubnetSpec) *v1.Subnet {
	t.Helper()
	subnet := &v1.Subnet{ObjectMeta: metav1.ObjectMeta{Name: "subnet-" + rand.String(6)}, Spec: spec}
	create(t, subnet)
	return subnet
}

// NewReservedIP creates a ReservedIP of the addresses and ranges and removes it when the
// test ends.
func NewReservedIP(t *testing.T, ips ...string) *v1.ReservedIP {
	t.Helper()
	res := &v1.ReservedIP{ObjectMeta: metav1.ObjectMeta{Name: "reserved-" + rand.String(5)}, Spec: v1.ReservedIPSpec{IPs: ips}}
	create(t, res)
	return res
}

// create creates a cluster-scoped object and deletes it when the test ends.
func create(t *testing.T, obj client.Object) {
	t.Helper()
	if err := Suite.Client.Create(Ctx(t), obj); err != nil {
		t.Fatalf("creating %T %s: %v", obj, obj.GetName(), err)
	}
	t.Cleanup(func() { _ = Suite.Client.Delete(context.Background(), obj) })
}

// NewNamespace creates a namespace for the test's pods and Endpoints.
func NewNamespace(t *testing.T) string {
	t.Helper()
	return NewNamespaceWith(t, nil, nil)
}

// NewNamespaceWith creates a namespace with these annotations and labels.
func NewNamespaceWith(t *testing.T, annotations, labels map[string]string) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "e2e-" + rand.String(6), Annotations: annotations, Labels: labels}}
	if err := Suite.Client.Create(Ctx(t), ns); err != nil {
		t.Fatalf("creating namespace: %v", err)
	}
	return ns.Name
}

var nadKind = schema.GroupVersionKind{Group: "k8s.cni.cncf.io", Version: "v1", Kind: "NetworkAttachmentDefinition"}

// NewNAD creates a NetworkAttachmentDefinition holding the conflist.
func NewNAD(t *testing.T, ns, name string, conflist []byte) {
	t.Helper()
	nad := &unstructured.Unstructured{}
	nad.SetGroupVersionKind(nadKind)
	nad.SetNamespace(ns)
	nad.SetName(name)
	nad.Object["spec"] = map[string]any{"config": string(conflist)}
	if err := Suite.Client.Create(Ctx(t), nad); err != nil {
		t.Fatalf("creating NAD %s: %v", name, err)
	}
}

// NADConfig reads the conflist a NetworkAttachmentDefinition holds, as multus hands it
// to its delegate.
func NADConfig(t *testing.T, ns, name string) []byte {
	t.Helper()
	nad := &unstructured.Unstructured{}
	nad.SetGroupVersionKind(nadKind)
	if err := Suite.Client.Get(Ctx(t), client.ObjectKey{Namespace: ns, Name: name}, nad); err != nil {
		t.Fatalf("reading NAD %s: %v", name, err)
	}
	conf, _, _ := unstructured.NestedString(nad.Object, "spec", "config")
	return []byte(conf)
}

// NewPod creates a Pod object on this node (no kubelet: it stays Pending, which is all
// ipamd needs) and returns it with its UID.
func NewPod(t *testing.T, ns, name string, annotations, labels map[string]string, owner *metav1.OwnerReference) *corev1.Pod {
	t.Helper()
	return NewPodOn(t, NodeName, ns, name, annotations, labels, owner)
}

// NewPodOn is NewPod on another node.
func NewPodOn(t *testing.T, node, ns, name string, annotations, labels map[string]string, owner *metav1.OwnerReference) *corev1.Pod {
	t.Helper()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Annotations: annotations, Labels: labels},
		Spec:       corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "c", Image: "pause"}}},
	}
	if owner != nil {
		pod.OwnerReferences = []metav1.OwnerReference{*owner}
	}
	if err := Suite.Client.Create(Ctx(t), pod); err != nil {
		t.Fatalf("creating pod %s: %v", name, err)
	}
	return pod
}

// podTemplate is the pod of a workload named app: labelled app=app, one container.
func podTemplate(app string, annotations map[string]string) corev1.PodTemplateSpec {
	return corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": app}, Annotations: annotations},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "pause"}}},
	}
}

// DeploymentOf is a Deployment whose pods carry the annotations (not created yet).
func DeploymentOf(ns, name string, replicas int32, annotations map[string]string) *appsv1.Deployment {
	return &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: appsv1.DeploymentSpec{
		Replicas: ptr.To(replicas), Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": name}},
		Template: podTemplate(name, annotations)}}
}

// StatefulSetOf is a StatefulSet whose pods carry the annotations (not created yet).
func StatefulSetOf(ns, name string, replicas int32, annotations map[string]string) *appsv1.StatefulSet {
	return &appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: appsv1.StatefulSetSpec{
		Replicas: ptr.To(replicas), Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": name}},
		Template: podTemplate(name, annotations)}}
}

// DaemonSetOf is a DaemonSet whose pods carry the annotations (not created yet).
func DaemonSetOf(ns, name string, annotations map[string]string) *appsv1.DaemonSet {
	return &appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: appsv1.DaemonSetSpec{
		Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": name}}, Template: podTemplate(name, annotations)}}
}

// ReplicaSetOf is a ReplicaSet of its own (no Deployment) whose pods carry the annotations
// (not created yet).
func ReplicaSetOf(ns, name string, replicas int32, annotations map[string]string) *appsv1.ReplicaSet {
	return &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: appsv1.ReplicaSetSpec{
		Replicas: ptr.To(replicas), Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": name}},
		Template: podTemplate(name, annotations)}}
}

// JobOf is a Job running parallelism pods at once that carry the annotations (not created
// yet); its pods never finish under the kubelet stand-in.
func JobOf(ns, name string, parallelism int32, annotations map[string]string) *batchv1.Job {
	return &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: jobSpec(name, parallelism, annotations)}
}

// CronJobOf is a CronJob on schedule whose Jobs run parallelism pods that carry the
// annotations (not created yet). A Job's pods never finish under the kubelet stand-in, so
// a later Job is not started while one runs (concurrencyPolicy Forbid).
func CronJobOf(ns, name, schedule string, parallelism int32, annotations map[string]string) *batchv1.CronJob {
	return &batchv1.CronJob{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: batchv1.CronJobSpec{
		Schedule: schedule, ConcurrencyPolicy: batchv1.ForbidConcurrent,
		JobTemplate: batchv1.JobTemplateSpec{Spec: jobSpec(name, parallelism, annotations)}}}
}

func jobSpec(app string, parallelism int32, annotations map[string]string) batchv1.JobSpec {
	t := podTemplate(app, annotations)
	t.Spec.RestartPolicy = corev1.RestartPolicyNever
	return batchv1.JobSpec{Parallelism: ptr.To(parallelism), Completions: ptr.To[int32](100), Template: t}
}

// NetConf is the underpool meta-plugin as a conflist: any delegate, the ipamd socket, and
// any further top-level plugin fields (routing, checks, macPrefix, ...).
type NetConf struct {
	Name       string         // default: a random one
	CNIVersion string         // default: 1.1.0
	Delegate   map[string]any // e.g. macvlanOn(parent)
	IPv4Pools  []string
	IPv6Pools  []string
	Socket     string // default: the suite's ipamd
	// OnNode says the plugin runs in a netns standing for a node (a kubelet stand-in's
	// NodeNetNS, NodeCNI): host connectivity keeps its default there. Otherwise it runs
	// in the machine's own netns, which must never get a host veth or routes, and host
	// connectivity is off.
	OnNode bool
	Extra  map[string]any // set last: they replace the defaults above
}

// WithPool returns c with pool as its only pool of family ("IPv4" or "IPv6").
func (c NetConf) WithPool(family, pool string) NetConf {
	if family == "IPv4" {
		c.IPv4Pools = []string{pool}
	} else {
		c.IPv6Pools = []string{pool}
	}
	return c
}

// MacvlanOn is a macvlan delegate in bridge mode.
func MacvlanOn(master string) map[string]any {
	return map[string]any{"type": "macvlan", "master": master, "mode": "bridge"}
}

// Conflist renders the NetConf as a conflist, the defaults filled in.
func (c NetConf) Conflist(t *testing.T) []byte {
	t.Helper()
	if c.Name == "" {
		c.Name = "under-" + rand.String(5)
	}
	if c.CNIVersion == "" {
		c.CNIVersion = "1.1.0"
	}
	if c.Socket == "" {
		c.Socket = Suite.Ipamd.Options.Socket
	}
	plugin := map[string]any{
		"type":         "underpool",
		"capabilities": map[string]bool{"ips": true, "mac": true},
		"delegate":     c.Delegate,
		"ipam":         map[string]any{"socket": c.Socket, "ipv4Pools": c.IPv4Pools, "ipv6Pools": c.IPv6Pools},
		"logFile":      filepath.Join(Suite.Dir, "plugin.log"),
	}
	if !c.OnNode {
		plugin["hostConnectivity"] = map[string]any{"enabled": false}
	}
	for k, v := range c.Extra {
		plugin[k] = v
	}
	return MustJSON(t, map[string]any{"cniVersion": c.CNIVersion, "name": c.Name, "plugins": []any{plugin}})
}

// IPAMPluginConf is a standard conflist: macvlan makes the link, underpool-ipam the
// addresses.
func IPAMPluginConf(t *testing.T, master, pool string) []byte {
	t.Helper()
	return MustJSON(t, map[string]any{
		"cniVersion": "1.1.0", "name": "plain-macvlan",
		"plugins": []any{map[string]any{
			"type": "macvlan", "master": master, "mode": "bridge",
			"ipam": map[string]any{"type": "underpool-ipam", "socket": Suite.Ipamd.Options.Socket,
				"ipv4Pools": []string{pool}, "logFile": filepath.Join(Suite.Dir, "ipam-plugin.log")},
		}},
	})
}

// MultusConflist is the thin plugin with loopback standing in for the cluster network.
// Multus takes one binDir, so ours and the peers' binaries are linked into one folder.
func MultusConflist(t *testing.T) []byte {
	t.Helper()
	binDir := filepath.Join(Suite.Dir, "multus-bin")
	if _, err := os.Stat(binDir); err != nil {
		if err := os.MkdirAll(binDir, 0o755); err != nil {
			t.Fatal(err)
		}
		for _, dir := range []string{harness.CacheBinDir(), Suite.Bin} {
			entries, _ := os.ReadDir(dir)
			for _, e := range entries {
				_ = os.Symlink(filepath.Join(dir, e.Name()), filepath.Join(binDir, e.Name()))
			}
		}
	}
	return MultusConflistIn(t, binDir)
}

// MultusConflistIn is the multus thin conflist with its delegates taken from binDir.
func MultusConflistIn(t *testing.T, binDir string) []byte {
	t.Helper()
	return MustJSON(t, map[string]any{
		"cniVersion": "1.0.0", "name": "multus-e2e",
		"plugins": []any{map[string]any{
			"type": "multus", "kubeconfig": Suite.CP.KubeconfigPath,
			"cniDir": filepath.Join(Suite.Dir, "multus-cache"), "binDir": binDir,
			"logFile": filepath.Join(Suite.Dir, "multus.log"), "logLevel": "error",
			"delegates": []any{map[string]any{"cniVersion": "1.0.0", "name": "default",
				"plugins": []any{map[string]any{"type": "loopback"}}}},
		}},
	})
}

// ClusterNetwork stands for the cluster's own CNI (Calico, Cilium, ...): the bridge plugin
// with host-local on subnet, giving eth0 and the default route.
func ClusterNetwork(t *testing.T, bridge, subnet string) []byte {
	t.Helper()
	return MustJSON(t, map[string]any{"cniVersion": "1.1.0", "name": "cluster-" + rand.String(4), "plugins": []any{
		map[string]any{"type": "bridge", "bridge": bridge, "isGateway": true, "isDefaultGateway": true,
			"ipam": map[string]any{"type": "host-local", "subnet": subnet, "dataDir": filepath.Join(t.TempDir(), "host-local")}},
	}})
}

// MustJSON marshals v, failing the test if it cannot.
func MustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// RuntimeFor describes a pod attachment as a Kubernetes runtime would, for a pod that
// exists only as CNI_ARGS.
func RuntimeFor(pod *harness.NetNS, namespace, name, ifName string) harness.Runtime {
	return harness.Runtime{ContainerID: "ctr-" + name, NetNS: pod.Path(), IfName: ifName,
		PodNamespace: namespace, PodName: name, PodUID: "uid-" + name}
}

// RuntimeOf describes an attachment of a Pod object, with its real UID, so ipamd can read
// its annotations.
func RuntimeOf(pod *corev1.Pod, netns *harness.NetNS, ifName string) harness.Runtime {
	rt := RuntimeFor(netns, pod.Namespace, pod.Name, ifName)
	rt.PodUID = string(pod.UID)
	return rt
}

// NodeCNI runs plugins as a runtime on a node whose network namespace is node.
func NodeCNI(t *testing.T, node *harness.NetNS) *harness.CNI {
	return &harness.CNI{BinDirs: Suite.CNI.BinDirs, CacheDir: t.TempDir(), NodeNetNS: node.Path()}
}
