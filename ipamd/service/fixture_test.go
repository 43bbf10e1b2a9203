package service_test

import (
	"context"
	"net/netip"
	"slices"
	"testing"
	"time"

	"go.uber.org/zap"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/core/allocator"
	"github.com/underpool/underpool/ipamd/cluster"
	"github.com/underpool/underpool/ipamd/service"
	"github.com/underpool/underpool/ipamd/store"
	"github.com/underpool/underpool/rpc"
)

// world is one API (controller-runtime's fake client) and the ipamds of several nodes on
// it. Each node reads through its own cache, which is the API itself unless a test makes
// it stale with freeze: that is how the races of a lagging informer are reproduced.
type world struct {
	t      *testing.T
	api    client.WithWatch
	scheme *runtime.Scheme
	// services are the ipamds made by ipamd, whose frees settle waits for
	services []*service.Service
}

func newWorld(t *testing.T, funcs *interceptor.Funcs, objs ...client.Object) *world {
	t.Helper()
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	if err := v1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	b := withEndpointIndexes(fake.NewClientBuilder().WithScheme(scheme).WithStatusSubresource(&v1.IPPool{}, &corev1.Pod{}).WithObjects(objs...))
	if funcs != nil {
		b = b.WithInterceptorFuncs(*funcs)
	}
	return &world{t: t, api: b.Build(), scheme: scheme}
}

// ipamd returns a node's service reading through cache (nil: the API, always current).
func (w *world) ipamd(node string, cache client.Reader) *service.Service {
	if cache == nil {
		cache = nodeScoped{Reader: w.api, node: node}
	}
	log := zap.NewNop()
	pools := store.NewPoolCommitter(w.api, cache, w.api, nil, log, nil)
	pools.Patience = 300 * time.Millisecond // a conflict that never ends fails fast here
	svc := &service.Service{
		Node:          node,
		Pools:         pools,
		Endpoints:     store.NewEndpoints(w.api, cache, w.api),
		Cluster:       cluster.New(node, cache, w.api),
		QuarantineFor: time.Minute,
		Log:           log,
		Metrics:       service.NewMetrics(nil),
	}
	w.services = append(w.services, svc)
	return svc
}

// settle waits for the frees every ipamd of the world sent after answering a DEL, so
// what a test reads from a pool is what its steps left (service.Settle).
func (w *world) settle() {
	for _, svc := range w.services {
		svc.Settle()
	}
}

// freeze copies the API's current Endpoints, pods and pools into a cache that no longer
// follows the API: a lagging informer.
func (w *world) freeze() client.Reader {
	w.t.Helper()
	var objs []client.Object
	var eps v1.EndpointList
	var pools v1.IPPoolList
	var pods corev1.PodList
	for _, l := range []client.ObjectList{&eps, &pools, &pods} {
		if err := w.api.List(context.Background(), l); err != nil {
			w.t.Fatal(err)
		}
	}
	for i := range eps.Items {
		objs = append(objs, &eps.Items[i])
	}
	for i := range pools.Items {
		objs = append(objs, &pools.Items[i])
	}
	for i := range pods.Items {
		objs = append(objs, &pods.Items[i])
	}
	return withEndpointIndexes(fake.NewClientBuilder().WithScheme(w.scheme).WithObjects(objs...)).Build()
}

// withEndpointIndexes registers the indexes ipamd's informer has.
func withEndpointIndexes(b *fake.ClientBuilder) *fake.ClientBuilder {
	for field, fn := range store.EndpointIndexers() {
		b = b.WithIndex(&v1.Endpoint{}, field, fn)
	}
	return b
}

func (w *world) create(obj client.Object) {
	w.t.Helper()
	if err := w.api.Create(context.Background(), obj); err != nil {
		w.t.Fatalf("creating %T %s: %v", obj, obj.GetName(), err)
	}
}

func (w *world) pool(name string) *v1.IPPool {
	w.t.Helper()
	p := &v1.IPPool{}
	if err := w.api.Get(context.Background(), client.ObjectKey{Name: name}, p); err != nil {
		w.t.Fatal(err)
	}
	return p
}

// state reads a pool's allocation state from the API, once the frees in flight landed:
// empty when it has none yet.
func (w *world) state(name string) v1.AllocationState {
	w.t.Helper()
	w.settle()
	return w.stateAsIs(name)
}

// stateAsIs is state without waiting for the frees in flight.
func (w *world) stateAsIs(name string) v1.AllocationState {
	w.t.Helper()
	a := &v1.PoolAllocation{}
	if err := w.api.Get(context.Background(), client.ObjectKey{Name: name}, a); err != nil {
		if apierrors.IsNotFound(err) {
			return v1.AllocationState{}
		}
		w.t.Fatal(err)
	}
	return v1.StateOf(w.pool(name), a)
}

// endpoint reads a pod's Endpoint from the API once the deletes of emptied Endpoints in
// flight landed; nil when it has none.
func (w *world) endpoint(ns, name string) *v1.Endpoint {
	w.t.Helper()
	w.settle()
	ep := &v1.Endpoint{}
	err := w.api.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, ep)
	if err != nil {
		return nil
	}
	return ep
}

// mark takes addr in the pool's status directly, as another ipamd's commit would.
func (w *world) mark(pool string, addr netip.Addr) {
	w.t.Helper()
	if _, err := store.NewPoolCommitter(w.api, w.api, w.api, nil, nil, nil).Ensure(context.Background(), pool, []netip.Addr{addr}); err != nil {
		w.t.Fatal(err)
	}
}

// requireOneOwner checks invariant 1 on the API's state: no address is held by two
// attachments, and every address an Endpoint holds is marked in its pool. (An address
// marked but unheld is an orphan: allowed, the sweeper frees it.)
func (w *world) requireOneOwner() {
	w.t.Helper()
	var eps v1.EndpointList
	if err := w.api.List(context.Background(), &eps); err != nil {
		w.t.Fatal(err)
	}
	owner := map[string]string{}
	for _, ep := range eps.Items {
		for _, itf := range ep.Status.Interfaces {
			for _, ip := range itf.IPs {
				who := ep.Namespace + "/" + ep.Name + " " + itf.ContainerID
				if prev, dup := owner[ip.Address]; dup {
					w.t.Fatalf("%s is held twice: by %s and by %s", ip.Address, prev, who)
				}
				owner[ip.Address] = who
				pool := w.pool(ip.Pool)
				view, err := allocator.NewPool(pool.Name, &pool.Spec)
				if err != nil {
					w.t.Fatal(err)
				}
				st := w.state(ip.Pool)
				marked, err := allocator.ParseRunSet(st.Allocated)
				if err != nil {
					w.t.Fatal(err)
				}
				addr := netip.MustParsePrefix(ip.Address).Addr()
				if o, ok := view.Offset(addr); !ok || !marked.Contains(o) {
					w.t.Fatalf("%s is held by %s but free in pool %s (%q): it could be handed out twice", ip.Address, who, pool.Name, st.Allocated)
				}
			}
		}
	}
}

// requireAllocated asserts the pool's allocation state holds exactly want addresses.
func (w *world) requireAllocated(pool string, want int64) {
	w.t.Helper()
	if st := w.state(pool); st.AllocatedIPCount != want {
		w.t.Fatalf("pool %s holds %d addresses, want %d (%q)", pool, st.AllocatedIPCount, want, st.Allocated)
	}
}

// stateObj is a PoolAllocation of pool holding the offsets in allocated, to seed the API with.
func stateObj(pool *v1.IPPool, allocated string) *v1.PoolAllocation {
	a := v1.AllocationOf(pool)
	a.State.Allocated = allocated
	return a
}

func newPoolObj(name, subnet string) *v1.IPPool {
	return &v1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: name, Finalizers: []string{v1.PoolProtection}}, Spec: v1.IPPoolSpec{Subnet: subnet}}
}

func podObj(ns, name, node string, owner *appsv1.StatefulSet) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: types.UID("uid-" + name + "-1")},
		Spec: corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "c", Image: "pause"}}}}
	if owner != nil {
		p.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "StatefulSet", Name: owner.Name,
			UID: owner.UID, Controller: ptr.To(true)}}
	}
	return p
}

func statefulSet(ns, name string, replicas, start int32) *appsv1.StatefulSet {
	s := &appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: types.UID("sts-" + name)},
		Spec: appsv1.StatefulSetSpec{Replicas: ptr.To(replicas)}}
	if start != 0 {
		s.Spec.Ordinals = &appsv1.StatefulSetOrdinals{Start: start}
	}
	return s
}

func nsObj(name string) *corev1.Namespace {
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
}

// nodeScoped is what ipamd's informer cache holds: Endpoints of its own node only (the
// daemon watches them with the field selector status.node=<node>); node "" sees all, as
// the controller's cache does.
type nodeScoped struct {
	client.Reader
	node string
}

func (r nodeScoped) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	if err := r.Reader.Get(ctx, key, obj, opts...); err != nil {
		return err
	}
	if ep, ok := obj.(*v1.Endpoint); ok && r.node != "" && ep.Status.Node != r.node {
		return apierrors.NewNotFound(v1.GroupVersion.WithResource("endpoints").GroupResource(), key.Name)
	}
	return nil
}

func (r nodeScoped) List(ctx context.Context, list client.ObjectList, opts ...client.ListOption) error {
	if err := r.Reader.List(ctx, list, opts...); err != nil {
		return err
	}
	if eps, ok := list.(*v1.EndpointList); ok && r.node != "" {
		eps.Items = slices.DeleteFunc(eps.Items, func(ep v1.Endpoint) bool { return ep.Status.Node != r.node })
	}
	return nil
}

// recycleGoneNodes runs the elected controller's recycling round over the Endpoints of
// nodes the API no longer has, reading Endpoints through cache (nil: the API).
func (w *world) recycleGoneNodes(cache client.Reader, now time.Time, grace time.Duration) (map[string]int, error) {
	exists := func(name string) bool {
		return w.api.Get(context.Background(), client.ObjectKey{Name: name}, &corev1.Node{}) == nil
	}
	return w.ipamd("", cache).RecycleGoneNodes(context.Background(), now, grace, exists)
}

func nodeObj(name string) *corev1.Node {
	return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}
}

// add runs an ADD for pod through svc from pool and returns the one address it got.
func add(t *testing.T, svc *service.Service, pod *corev1.Pod, containerID, pool string) string {
	t.Helper()
	resp, err := svc.Allocate(context.Background(), &rpc.AllocateRequest{ContainerID: containerID, IfName: "net1", Network: "under",
		Pod: rpc.Pod{Namespace: pod.Namespace, Name: pod.Name, UID: string(pod.UID)}, IPv4Pools: []string{pool}})
	if err != nil {
		t.Fatalf("ADD %s/%s (%s): %v", pod.Namespace, pod.Name, containerID, err)
	}
	if len(resp.IPs) != 1 {
		t.Fatalf("ADD %s: %+v", pod.Name, resp)
	}
	return resp.IPs[0].Address
}

// del runs a DEL for an attachment through svc.
func del(t *testing.T, svc *service.Service, pod *corev1.Pod, containerID string) {
	t.Helper()
	err := svc.Release(context.Background(), &rpc.ReleaseRequest{ContainerID: containerID, IfName: "net1",
		Pod: rpc.Pod{Namespace: pod.Namespace, Name: pod.Name, UID: string(pod.UID)}})
	if err != nil {
		t.Fatalf("DEL %s/%s (%s): %v", pod.Namespace, pod.Name, containerID, err)
	}
}

// deletePod removes a pod object at once, as the kubelet finally does.
func (w *world) deletePod(pod *corev1.Pod) {
	w.t.Helper()
	if err := w.api.Delete(context.Background(), pod, client.GracePeriodSeconds(0)); err != nil {
		w.t.Fatal(err)
	}
}
