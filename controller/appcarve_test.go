package controller

import (
	"context"
	"strings"
	"sync"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/core/allocator"
	"github.com/underpool/underpool/core/apppool"
)

// subnetObj is a Subnet of the addresses ips (all of cidr when none).
func subnetObj(name, cidr string, ips ...string) *v1.Subnet {
	return &v1.Subnet{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: v1.SubnetSpec{Subnet: cidr, IPs: ips}}
}

// deploymentOn is a Deployment of replicas whose pods carry annotations.
func deploymentOn(name string, replicas int32, annotations map[string]string) *appsv1.Deployment {
	d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name}, Spec: appsv1.DeploymentSpec{
		Replicas: ptr.To(replicas), Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": name}}}}
	d.Spec.Template.Annotations = annotations
	return d
}

// reconciler is the application pool reconciler of kind over api, with its events.
func reconciler(t *testing.T, api client.Client, kind string) (*appPools, *events.FakeRecorder) {
	t.Helper()
	rec := events.NewFakeRecorder(100)
	return &appPools{c: api, api: api, kind: kind, events: rec, carving: &sync.Mutex{}, changes: testMetrics(t).appPoolChanges}, rec
}

func reconcileOnce(t *testing.T, r *appPools, ns, name string) reconcile.Result {
	t.Helper()
	res, err := r.Reconcile(context.Background(), reconcile.Request{NamespacedName: types.NamespacedName{Namespace: ns, Name: name}})
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// drain returns the events recorded so far.
func drain(rec *events.FakeRecorder) []string {
	var out []string
	for len(rec.Events) > 0 {
		out = append(out, <-rec.Events)
	}
	return out
}

// workloadPool reads the workload's IPv4 pool; nil when there is none.
func workloadPool(t *testing.T, c client.Reader, w apppool.Workload) *v1.IPPool {
	t.Helper()
	p := &v1.IPPool{}
	if err := c.Get(context.Background(), client.ObjectKey{Name: w.PoolName(v1.IPv4)}, p); err != nil {
		return nil
	}
	return p
}

func usable(t *testing.T, p *v1.IPPool) uint64 {
	t.Helper()
	view, err := allocator.NewPool(p.Name, &p.Spec)
	if err != nil {
		t.Fatal(err)
	}
	return view.Usable.Count()
}

// Every Subnet named is used in order: a Subnet with too little room left is passed over
// for the next, the pool records the Subnet it came from, and the workload is told why.
func TestANewPoolComesFromTheFirstSubnetWithRoom(t *testing.T) {
	small := subnetObj("small", "10.0.0.0/24", "10.0.0.10-10.0.0.11") // two addresses
	roomy := subnetObj("roomy", "10.1.0.0/24")
	dep := deploymentOn("web", 3, map[string]string{v1.AnnotationSubnet: `{"ipv4":["small","roomy"]}`})
	api := fake.NewClientBuilder().WithScheme(testScheme(t)).WithObjects(small, roomy, dep).Build()
	r, rec := reconciler(t, api, apppool.KindDeployment)
	reconcileOnce(t, r, "ns", "web")
	p := workloadPool(t, api, apppool.Workload{Kind: "Deployment", Namespace: "ns", Name: "web"})
	if p == nil || p.Labels[apppool.LabelSubnet] != "roomy" || p.Spec.Subnet != "10.1.0.0/24" || usable(t, p) != 3 {
		t.Fatalf("pool %+v, want 3 addresses of Subnet roomy, labelled so", p)
	}
	if ev := strings.Join(drain(rec), "\n"); !strings.Contains(ev, "AppPoolCarved") || !strings.Contains(ev, "Subnet roomy") || !strings.Contains(ev, "only 2 addresses of Subnet small") {
		t.Errorf("events %q: want the carve from roomy and why small was passed over", ev)
	}
}

// A pool that no longer fits its Subnet when its workload grows stays in that Subnet (its
// pods' addresses never move to another) and the workload is told, though the next
// Subnet has room; it grows once the Subnet has room again.
func TestAResizeThatNoLongerFitsStaysInItsSubnetAndIsReported(t *testing.T) {
	first := subnetObj("first", "10.0.0.0/24", "10.0.0.10-10.0.0.13") // four addresses
	second := subnetObj("second", "10.1.0.0/24")
	dep := deploymentOn("web", 3, map[string]string{v1.AnnotationSubnet: `{"ipv4":["first","second"]}`})
	api := fake.NewClientBuilder().WithScheme(testScheme(t)).WithObjects(first, second, dep).Build()
	r, rec := reconciler(t, api, apppool.KindDeployment)
	w := apppool.Workload{Kind: "Deployment", Namespace: "ns", Name: "web"}
	reconcileOnce(t, r, "ns", "web")
	before := workloadPool(t, api, w)
	if before == nil || before.Labels[apppool.LabelSubnet] != "first" {
		t.Fatalf("pool %+v, want it in Subnet first", before)
	}
	drain(rec)

	dep.Spec.Replicas = ptr.To[int32](6)
	if err := api.Update(context.Background(), dep); err != nil {
		t.Fatal(err)
	}
	if res := reconcileOnce(t, r, "ns", "web"); res.RequeueAfter <= 0 {
		t.Errorf("no recheck of a pool that cannot grow: %+v", res)
	}
	after := workloadPool(t, api, w)
	if after.Spec.Subnet != before.Spec.Subnet || strings.Join(after.Spec.IPs, ",") != strings.Join(before.Spec.IPs, ",") {
		t.Fatalf("the pool moved or changed: %v %v, was %v %v", after.Spec.Subnet, after.Spec.IPs, before.Spec.Subnet, before.Spec.IPs)
	}
	if ev := strings.Join(drain(rec), "\n"); !strings.Contains(ev, "Warning AppPoolNoRoom") || !strings.Contains(ev, "stays in Subnet first") {
		t.Errorf("events %q: want a warning that the pool stays in Subnet first", ev)
	}

	dep.Spec.Replicas = ptr.To[int32](4)
	if err := api.Update(context.Background(), dep); err != nil {
		t.Fatal(err)
	}
	reconcileOnce(t, r, "ns", "web")
	if p := workloadPool(t, api, w); usable(t, p) != 4 || p.Spec.Subnet != "10.0.0.0/24" {
		t.Fatalf("pool %v after scaling to 4: want 4 addresses of Subnet first", p.Spec.IPs)
	}
}

// No Subnet named with room: nothing is carved, the workload is told which Subnets lack
// how much, and looked at again.
func TestNoSubnetWithRoomCarvesNothingAndSaysWhy(t *testing.T) {
	a := subnetObj("a", "10.0.0.0/24", "10.0.0.10")
	b := subnetObj("b", "10.1.0.0/24", "10.1.0.10-10.1.0.11")
	dep := deploymentOn("web", 3, map[string]string{v1.AnnotationSubnet: `{"ipv4":["a","b"]}`})
	api := fake.NewClientBuilder().WithScheme(testScheme(t)).WithObjects(a, b, dep).Build()
	r, rec := reconciler(t, api, apppool.KindDeployment)
	if res := reconcileOnce(t, r, "ns", "web"); res.RequeueAfter != noRoomRecheck {
		t.Errorf("recheck %v, want %v", res.RequeueAfter, noRoomRecheck)
	}
	requireDisjoint(t, api, 0)
	ev := strings.Join(drain(rec), "\n")
	if !strings.Contains(ev, "AppPoolNoRoom") || !strings.Contains(ev, "Subnet a") || !strings.Contains(ev, "Subnet b") {
		t.Errorf("events %q", ev)
	}
}

// A Subnet named in the other family's list is a mistake to fix, not a Subnet without
// room: the carve stops there with an error naming the list to move it to.
func TestASubnetOfTheOtherFamilyIsRefusedByName(t *testing.T) {
	v6 := subnetObj("six", "fd00:1::/64")
	dep := deploymentOn("web", 1, map[string]string{v1.AnnotationSubnet: `{"ipv4":["six"]}`})
	api := fake.NewClientBuilder().WithScheme(testScheme(t)).WithObjects(v6, dep).Build()
	r, rec := reconciler(t, api, apppool.KindDeployment)
	reconcileOnce(t, r, "ns", "web")
	requireDisjoint(t, api, 0)
	if ev := strings.Join(drain(rec), "\n"); !strings.Contains(ev, `Subnet six in its "ipv4" list`) || !strings.Contains(ev, `"ipv6" list`) {
		t.Errorf("events %q", ev)
	}
}

// A workload that wants no pods yet (replicas 0; a DaemonSet before it counts its
// nodes) gets no pool: an IPPool without addresses would offer its whole subnet and
// overlap every other pool of the Subnet. Scaled up, it gets its pool; scaled to zero
// again, the pool keeps one address.
func TestAWorkloadOfNoReplicasGetsNoPoolOfTheWholeSubnet(t *testing.T) {
	s := subnetObj("s", "10.0.0.0/24")
	dep := deploymentOn("idle", 0, map[string]string{v1.AnnotationSubnet: `{"ipv4":["s"]}`})
	api := fake.NewClientBuilder().WithScheme(testScheme(t)).WithObjects(s, dep).Build()
	r, _ := reconciler(t, api, apppool.KindDeployment)
	w := apppool.Workload{Kind: "Deployment", Namespace: "ns", Name: "idle"}
	reconcileOnce(t, r, "ns", "idle")
	if p := workloadPool(t, api, w); p != nil {
		t.Fatalf("a Deployment of 0 replicas got pool %v (ips %v)", p.Name, p.Spec.IPs)
	}
	dep.Spec.Replicas = ptr.To[int32](2)
	if err := api.Update(context.Background(), dep); err != nil {
		t.Fatal(err)
	}
	reconcileOnce(t, r, "ns", "idle")
	dep.Spec.Replicas = ptr.To[int32](0)
	if err := api.Update(context.Background(), dep); err != nil {
		t.Fatal(err)
	}
	reconcileOnce(t, r, "ns", "idle")
	if p := workloadPool(t, api, w); p == nil || len(p.Spec.IPs) == 0 || usable(t, p) != 1 {
		t.Fatalf("scaled to 0: pool %+v, want one address", p)
	}
}

// Scaled down while its pods still hold their addresses (they terminate), a pool keeps
// them and is looked at again: nothing about the workload changes when the pods go, so
// without the recheck it would keep them for good.
func TestAPoolShrinksOnceTheScaledDownPodsReleaseTheirAddresses(t *testing.T) {
	dep := deploymentOn("web", 3, map[string]string{v1.AnnotationSubnet: `{"ipv4":["s"]}`})
	api := fake.NewClientBuilder().WithScheme(testScheme(t)).WithObjects(subnetObj("s", "10.0.0.0/24"), dep).Build()
	r, _ := reconciler(t, api, apppool.KindDeployment)
	w := apppool.Workload{Kind: "Deployment", Namespace: "ns", Name: "web"}
	reconcileOnce(t, r, "ns", "web")
	p := workloadPool(t, api, w)
	holds(t, api, p, "1-3", 3) // every pod holds its address
	dep.Spec.Replicas = ptr.To[int32](1)
	if err := api.Update(context.Background(), dep); err != nil {
		t.Fatal(err)
	}
	if res := reconcileOnce(t, r, "ns", "web"); res.RequeueAfter != shrinkRecheck || usable(t, workloadPool(t, api, w)) != 3 {
		t.Fatalf("while the pods hold their addresses: recheck %v, %d addresses; want %v and all 3 kept", res.RequeueAfter, usable(t, workloadPool(t, api, w)), shrinkRecheck)
	}
	holds(t, api, workloadPool(t, api, w), "1", 1) // two pods went
	if res := reconcileOnce(t, r, "ns", "web"); res.RequeueAfter != 0 || usable(t, workloadPool(t, api, w)) != 1 {
		t.Fatalf("once released: recheck %v, %d addresses; want none and 1", res.RequeueAfter, usable(t, workloadPool(t, api, w)))
	}
}

// holds writes the pool's PoolAllocation holding allocated, as ipamd would.
func holds(t *testing.T, c client.Client, p *v1.IPPool, allocated string, count int64) {
	t.Helper()
	ctx := context.Background()
	a := &v1.PoolAllocation{}
	err := c.Get(ctx, client.ObjectKey{Name: p.Name}, a)
	if apierrors.IsNotFound(err) {
		a = v1.AllocationOf(p)
	} else if err != nil {
		t.Fatal(err)
	}
	a.State.Allocated, a.State.AllocatedIPCount = allocated, count
	if a.ResourceVersion == "" {
		err = c.Create(ctx, a)
	} else {
		err = c.Update(ctx, a)
	}
	if err != nil {
		t.Fatal(err)
	}
}
