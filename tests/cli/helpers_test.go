package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	nadv1 "github.com/k8snetworkplumbingwg/network-attachment-definition-client/pkg/apis/k8s.cni.cncf.io/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/core/allocator"
	"github.com/underpool/underpool/kubectlplugin"
	"github.com/underpool/underpool/tests/e2e"
	"github.com/underpool/underpool/tests/harness"
)

// plugin runs `kubectl underpool args...` against the suite's apiserver.
func plugin(t *testing.T, args ...string) (string, error) {
	t.Helper()
	out, errOut := &bytes.Buffer{}, &bytes.Buffer{}
	cmd := kubectlplugin.NewCommand(genericiooptions.IOStreams{In: strings.NewReader(""), Out: out, ErrOut: errOut})
	cmd.SetArgs(append(args, "--kubeconfig", suite.cp.KubeconfigPath))
	err := cmd.ExecuteContext(context.Background())
	return out.String(), err
}

// pluginJSON runs the plugin with -o json and decodes its answer into v.
func pluginJSON(t *testing.T, v any, args ...string) {
	t.Helper()
	out, err := plugin(t, append(args, "-o", "json")...)
	if err != nil {
		t.Fatalf("kubectl underpool %s: %v", strings.Join(args, " "), err)
	}
	if err := json.Unmarshal([]byte(out), v); err != nil {
		t.Fatalf("kubectl underpool %s -o json: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func create(t *testing.T, obj client.Object) {
	t.Helper()
	if err := suite.client.Create(context.Background(), obj); err != nil {
		t.Fatalf("create %T %s: %v", obj, obj.GetName(), err)
	}
	t.Cleanup(func() {
		if len(obj.GetFinalizers()) > 0 {
			_ = suite.client.Get(context.Background(), client.ObjectKeyFromObject(obj), obj)
			obj.SetFinalizers(nil)
			_ = suite.client.Update(context.Background(), obj)
		}
		if err := suite.client.Delete(context.Background(), obj); err != nil && !apierrors.IsNotFound(err) {
			t.Logf("cleanup %s: %v", obj.GetName(), err)
		}
	})
}

// namespace creates a throw-away namespace with labels and annotations.
func namespace(t *testing.T, labels, annotations map[string]string) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: harness.UniqueName("cli"), Labels: labels, Annotations: annotations}}
	create(t, ns)
	return ns.Name
}

func node(t *testing.T, name string, labels map[string]string) {
	t.Helper()
	create(t, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}})
}

// poolSpec is what a test sets on an IPPool; its allocation state is written into its
// PoolAllocation as ipamd writes it.
type poolSpec struct {
	v1.IPPoolSpec
	allocated   string
	quarantined []string
	annotations map[string]string
	labels      map[string]string
	finalizer   bool
}

func pool(t *testing.T, name string, s poolSpec) *v1.IPPool {
	t.Helper()
	p := &v1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: s.annotations, Labels: s.labels}, Spec: s.IPPoolSpec}
	if s.finalizer {
		p.Finalizers = []string{"underpool.io/test"}
	}
	create(t, p)
	if s.allocated == "" && len(s.quarantined) == 0 {
		return p
	}
	alloc := v1.AllocationOf(p)
	alloc.State.Allocated = s.allocated
	for _, ip := range s.quarantined {
		alloc.State.Quarantined = append(alloc.State.Quarantined, v1.QuarantinedIP{IP: ip, Until: metav1.NewTime(time.Now().Add(time.Hour))})
	}
	if view, err := allocator.NewPool(name, &p.Spec); err == nil { // a corrupt state keeps no counts
		if set, err := view.ParseAllocated(s.allocated); err == nil {
			alloc.State.SetCounts(view.TotalCount(), int64(set.Count()))
		}
	}
	create(t, alloc) // no garbage collector runs here: the test deletes it
	return p
}

// getState is the allocation state of pool name as ipamd reads it (v1.StateOf: no
// PoolAllocation, or an earlier pool's, is nothing allocated); ok is false when the pool
// does not exist.
func getState(t *testing.T, name string) (v1.AllocationState, bool) {
	t.Helper()
	p, ok := getPool(t, name)
	if !ok {
		return v1.AllocationState{}, false
	}
	alloc := &v1.PoolAllocation{}
	err := suite.client.Get(context.Background(), client.ObjectKey{Name: name}, alloc)
	if apierrors.IsNotFound(err) {
		return v1.AllocationState{}, true
	}
	if err != nil {
		t.Fatalf("get PoolAllocation %s: %v", name, err)
	}
	return v1.StateOf(p, alloc), true
}

// podOpts shape a pod; it is bound to node directly (no scheduler runs).
type podOpts struct {
	node        string
	labels      map[string]string
	annotations map[string]string
	owner       *metav1.OwnerReference
	phase       corev1.PodPhase
}

func pod(t *testing.T, ns, name string, o podOpts) *corev1.Pod {
	t.Helper()
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: o.labels, Annotations: o.annotations},
		Spec:       corev1.PodSpec{NodeName: o.node, Containers: []corev1.Container{{Name: "c", Image: "pause"}}},
	}
	if o.owner != nil {
		p.OwnerReferences = []metav1.OwnerReference{*o.owner}
	}
	create(t, p)
	if o.phase != "" {
		p.Status.Phase = o.phase
		if err := suite.client.Status().Update(context.Background(), p); err != nil {
			t.Fatalf("pod %s status: %v", name, err)
		}
	}
	return p
}

func owner(kind, name string) *metav1.OwnerReference {
	api := "apps/v1"
	return &metav1.OwnerReference{APIVersion: api, Kind: kind, Name: name, UID: "00000000-0000-0000-0000-000000000001", Controller: ptr.To(true)}
}

// attach is one Endpoint attachment, written as ipamd writes it.
type attach struct {
	containerID, ifName, network, podUID string
	ips                                  []v1.EndpointIP
	age                                  time.Duration
	detached                             bool
}

func endpoint(t *testing.T, ns, name, nodeName, podUID, ownerKind, ownerName string, atts ...attach) {
	t.Helper()
	ep := &v1.Endpoint{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Status: v1.EndpointStatus{PodUID: podUID, Node: nodeName, OwnerKind: ownerKind, OwnerName: ownerName}}
	for _, a := range atts {
		itf := v1.EndpointInterface{ContainerID: a.containerID, Interface: a.ifName, Network: a.network, PodUID: a.podUID,
			IPs: a.ips, Created: metav1.NewTime(time.Now().Add(-a.age).Truncate(time.Second))}
		if a.detached {
			itf.Detached = ptr.To(metav1.Now())
		}
		ep.Status.Interfaces = append(ep.Status.Interfaces, itf)
	}
	create(t, ep)
}

func ip(addr, pool string) v1.EndpointIP { return v1.EndpointIP{Address: addr, Pool: pool} }

func nad(t *testing.T, ns, name, config string) {
	t.Helper()
	create(t, &nadv1.NetworkAttachmentDefinition{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: nadv1.NetworkAttachmentDefinitionSpec{Config: config}})
}

// sandboxFailure writes the event the kubelet writes when a sandbox's CNI ADD fails.
func sandboxFailure(t *testing.T, p *corev1.Pod, message string, at time.Time) {
	t.Helper()
	create(t, &corev1.Event{
		ObjectMeta:     metav1.ObjectMeta{Namespace: p.Namespace, Name: harness.UniqueName(p.Name)},
		InvolvedObject: corev1.ObjectReference{Kind: "Pod", Namespace: p.Namespace, Name: p.Name, UID: p.UID, APIVersion: "v1"},
		Reason:         "FailedCreatePodSandBox", Message: message, Type: corev1.EventTypeWarning,
		Count: 3, FirstTimestamp: metav1.NewTime(at.Add(-time.Minute)), LastTimestamp: metav1.NewTime(at),
		Source: corev1.EventSource{Component: "kubelet", Host: p.Spec.NodeName},
	})
}

func statefulSet(t *testing.T, ns, name string, replicas int32) {
	t.Helper()
	create(t, e2e.StatefulSetOf(ns, name, replicas, nil))
}

func objMeta(name string) metav1.ObjectMeta { return metav1.ObjectMeta{Name: name} }
