package importer_test

import (
	"context"
	"encoding/json"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/kubectlplugin/importer"
)

// now is when every test's import runs: the imported attachments' creation time.
var now = time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)

const (
	spiderAPI = "spiderpool.spidernet.io/v2beta1"
	whereAPI  = "whereabouts.cni.cncf.io/v1alpha1"
)

// world is one API (controller-runtime's fake client) holding the peer's objects as
// unstructured, as the CRDs in tests/testdata/crds/spiderpool serve them, and whatever
// underpool objects and pods a test starts with. It records every write the import makes;
// fail makes the writes it matches fail.
type world struct {
	t *testing.T
	c client.WithWatch

	mu     sync.Mutex
	writes []string // "create IPPool a", "create PoolAllocation a", "patch IPPool a", ...
	fail   func(verb string, obj client.Object) error
	// beforeState runs before each create or update of a PoolAllocation, on the client
	// without interceptors: another writer (ipamd) getting there first
	beforeState func(c client.Client, obj client.Object)
}

func newWorld(t *testing.T, objs ...client.Object) *world {
	t.Helper()
	scheme := runtime.NewScheme() // one per test: the fake client adds the peer's kinds to it
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	if err := v1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	w := &world{t: t}
	w.c = fake.NewClientBuilder().WithScheme(scheme).
		WithStatusSubresource(&v1.IPPool{}, &v1.Subnet{}, &v1.ReservedIP{}, &corev1.Pod{}).
		WithObjects(objs...).
		WithInterceptorFuncs(interceptor.Funcs{
			Create: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.CreateOption) error {
				w.otherWriterFirst(c, obj)
				if err := w.write("create", obj); err != nil {
					return err
				}
				if obj.GetUID() == "" { // as the apiserver does; the fake client does not
					obj.SetUID(types.UID("uid-" + kindOf(obj) + "-" + nameOf(obj)))
				}
				return c.Create(ctx, obj, opts...)
			},
			Update: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.UpdateOption) error {
				w.otherWriterFirst(c, obj)
				if err := w.write("update", obj); err != nil {
					return err
				}
				return c.Update(ctx, obj, opts...)
			},
			Patch: func(ctx context.Context, c client.WithWatch, obj client.Object, patch client.Patch, opts ...client.PatchOption) error {
				if err := w.write("patch", obj); err != nil {
					return err
				}
				return c.Patch(ctx, obj, patch, opts...)
			},
			Delete: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.DeleteOption) error {
				if err := w.write("delete", obj); err != nil {
					return err
				}
				return c.Delete(ctx, obj, opts...)
			},
			SubResourceUpdate: func(ctx context.Context, c client.Client, sub string, obj client.Object, opts ...client.SubResourceUpdateOption) error {
				if err := w.write(sub, obj); err != nil {
					return err
				}
				return c.SubResource(sub).Update(ctx, obj, opts...)
			},
		}).Build()
	return w
}

// otherWriterFirst runs beforeState before a write of a PoolAllocation.
func (w *world) otherWriterFirst(c client.Client, obj client.Object) {
	if _, ok := obj.(*v1.PoolAllocation); ok && w.beforeState != nil {
		w.beforeState(c, obj)
	}
}

// write records a write, or fails it when w.fail says so.
func (w *world) write(verb string, obj client.Object) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.fail != nil {
		if err := w.fail(verb, obj); err != nil {
			return err
		}
	}
	w.writes = append(w.writes, verb+" "+kindOf(obj)+" "+nameOf(obj))
	return nil
}

func (w *world) written() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.writes...)
}

func kindOf(obj client.Object) string {
	switch obj.(type) {
	case *v1.IPPool:
		return "IPPool"
	case *v1.Subnet:
		return "Subnet"
	case *v1.ReservedIP:
		return "ReservedIP"
	case *v1.Endpoint:
		return "Endpoint"
	case *v1.PoolAllocation:
		return "PoolAllocation"
	}
	return obj.GetObjectKind().GroupVersionKind().Kind
}

func nameOf(obj client.Object) string {
	if obj.GetNamespace() != "" {
		return obj.GetNamespace() + "/" + obj.GetName()
	}
	return obj.GetName()
}

// run imports from source with the given prefix.
func (w *world) run(source string, dryRun bool, prefix string) (*importer.Report, error) {
	w.t.Helper()
	return importer.Run(context.Background(), w.c, importer.Options{Source: source, DryRun: dryRun, Prefix: prefix, Now: now})
}

// mustRun imports and fails the test on an error.
func (w *world) mustRun(source string, prefix string) *importer.Report {
	w.t.Helper()
	rep, err := w.run(source, false, prefix)
	if err != nil {
		w.t.Fatalf("import %s: %v", source, err)
	}
	return rep
}

func (w *world) pool(name string) *v1.IPPool {
	w.t.Helper()
	p := &v1.IPPool{}
	if err := w.c.Get(context.Background(), client.ObjectKey{Name: name}, p); err != nil {
		w.t.Fatalf("IPPool %s: %v", name, err)
	}
	return p
}

// state is the allocation state PoolAllocation name holds for IPPool name, as ipamd
// reads it (v1.StateOf).
func (w *world) state(name string) v1.AllocationState {
	w.t.Helper()
	a := &v1.PoolAllocation{}
	if err := w.c.Get(context.Background(), client.ObjectKey{Name: name}, a); err != nil {
		w.t.Fatalf("PoolAllocation %s: %v", name, err)
	}
	return v1.StateOf(w.pool(name), a)
}

func (w *world) endpoint(ns, name string) *v1.Endpoint {
	w.t.Helper()
	ep := &v1.Endpoint{}
	if err := w.c.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, ep); err != nil {
		w.t.Fatalf("Endpoint %s/%s: %v", ns, name, err)
	}
	return ep
}

// underpoolObjects names every underpool object in the API, sorted.
func (w *world) underpoolObjects() []string {
	w.t.Helper()
	ctx := context.Background()
	var out []string
	var pools v1.IPPoolList
	var subnets v1.SubnetList
	var reserved v1.ReservedIPList
	var eps v1.EndpointList
	var allocs v1.PoolAllocationList
	for _, l := range []client.ObjectList{&pools, &subnets, &reserved, &eps, &allocs} {
		if err := w.c.List(ctx, l); err != nil {
			w.t.Fatal(err)
		}
	}
	for _, p := range pools.Items {
		out = append(out, "IPPool "+p.Name)
	}
	for _, s := range subnets.Items {
		out = append(out, "Subnet "+s.Name)
	}
	for _, a := range allocs.Items {
		out = append(out, "PoolAllocation "+a.Name)
	}
	for _, r := range reserved.Items {
		out = append(out, "ReservedIP "+r.Name)
	}
	for _, e := range eps.Items {
		out = append(out, "Endpoint "+e.Namespace+"/"+e.Name)
	}
	sort.Strings(out)
	return out
}

// peerObject builds a peer IPAM's object as unstructured.
func peerObject(apiVersion, kind, ns, name string, spec, status map[string]any) *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: map[string]any{"apiVersion": apiVersion, "kind": kind}}
	u.SetNamespace(ns)
	u.SetName(name)
	if spec != nil {
		u.Object["spec"] = spec
	}
	if status != nil {
		u.Object["status"] = status
	}
	return u
}

// spiderIPPool is a SpiderIPPool whose status.allocatedIPs (a JSON string, as Spiderpool
// 0.5 and later write it) holds allocated.
func spiderIPPool(name string, spec map[string]any, allocated map[string]map[string]string) *unstructured.Unstructured {
	var status map[string]any
	if allocated != nil {
		data, _ := json.Marshal(allocated)
		status = map[string]any{"allocatedIPs": string(data), "allocatedIPCount": int64(len(allocated))}
	}
	return peerObject(spiderAPI, "SpiderIPPool", "", name, spec, status)
}

func spiderSubnet(name string, spec map[string]any) *unstructured.Unstructured {
	return peerObject(spiderAPI, "SpiderSubnet", "", name, spec, nil)
}

func spiderReservedIP(name string, ips ...any) *unstructured.Unstructured {
	return peerObject(spiderAPI, "SpiderReservedIP", "", name, map[string]any{"ips": ips}, nil)
}

// spiderEndpoint is a SpiderEndpoint whose status.current holds ips.
func spiderEndpoint(ns, name, uid, node string, ips ...map[string]any) *unstructured.Unstructured {
	list := make([]any, len(ips))
	for i := range ips {
		list[i] = ips[i]
	}
	return peerObject(spiderAPI, "SpiderEndpoint", ns, name, nil, map[string]any{
		"current": map[string]any{"uid": uid, "node": node, "ips": list}})
}

func wherePool(ns, name, rng string, allocations map[string]any) *unstructured.Unstructured {
	return peerObject(whereAPI, "IPPool", ns, name, map[string]any{"range": rng, "allocations": allocations}, nil)
}

func whereAlloc(id, podRef, ifName string) map[string]any {
	return map[string]any{"id": id, "podref": podRef, "ifname": ifName}
}

func whereReservation(ns, name, containerID, podRef string) *unstructured.Unstructured {
	return peerObject(whereAPI, "OverlappingRangeIPReservation", ns, name, map[string]any{"containerid": containerID, "podref": podRef}, nil)
}

// livePod is a running pod on node with a fixed UID ("uid-NAME").
func livePod(ns, name, node string, owner ...metav1.OwnerReference) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: types.UID("uid-" + name), OwnerReferences: owner},
		Spec:       corev1.PodSpec{NodeName: node},
		Status:     corev1.PodStatus{Phase: corev1.PodRunning},
	}
}

func controllerRef(kind, name string) metav1.OwnerReference {
	yes := true
	return metav1.OwnerReference{APIVersion: "apps/v1", Kind: kind, Name: name, UID: types.UID("uid-" + name), Controller: &yes}
}

// ipPool is an existing IPPool whose UID is "uid-pool-" and its name.
func ipPool(name string, spec v1.IPPoolSpec) *v1.IPPool {
	return &v1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: name, UID: types.UID("uid-pool-" + name)}, Spec: spec}
}

// allocation is p's PoolAllocation marking allocated (offset runs), as ipamd writes it.
func allocation(p *v1.IPPool, allocated string) *v1.PoolAllocation {
	a := v1.AllocationOf(p)
	a.State.Allocated = allocated
	return a
}

// changes renders a report's changes as "action Kind name".
func changes(rep *importer.Report) []string {
	var out []string
	for _, c := range rep.Changes {
		out = append(out, c.Action+" "+c.Kind+" "+c.Name)
	}
	return out
}

// skipped renders a report's skipped addresses as "address pod: reason".
func skipped(rep *importer.Report) []string {
	var out []string
	for _, s := range rep.Skipped {
		out = append(out, s.Address+" "+s.Pod+": "+s.Reason)
	}
	return out
}

// addresses lists an Endpoint's addresses as "ifname containerID address pool".
func addresses(ep *v1.Endpoint) []string {
	var out []string
	for _, itf := range ep.Status.Interfaces {
		for _, ip := range itf.IPs {
			out = append(out, strings.Join([]string{itf.Interface, itf.ContainerID, ip.Address, ip.Pool}, " "))
		}
	}
	return out
}

func wantSame(t *testing.T, what string, got, want []string) {
	t.Helper()
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("%s:\n got  %q\n want %q", what, got, want)
	}
}

// wantErr fails the test unless err holds every part.
func wantErr(t *testing.T, err error, parts ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want one with %q", parts)
	}
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			t.Errorf("error %q does not say %q", err, p)
		}
	}
}

func objKey(obj client.Object) client.ObjectKey { return client.ObjectKeyFromObject(obj) }
