package lifecycle

import (
	"context"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/core/apppool"
	"github.com/underpool/underpool/tests/e2e"
)

// Fixed-IP application pools: a Deployment naming a Subnet gets a pool carved from it,
// sized to its replicas +N and resized when it scales; its pods get addresses from it
// (ahead of the network's own pools); the pool goes with the Deployment, while a
// StatefulSet's pool marked ippool-reclaim: "false" stays.
func TestApplicationPoolsFollowTheirWorkload(t *testing.T) {
	v4, _, _ := e2e.NextSubnet()
	b := strings.TrimSuffix(v4, "0/24")
	subnet := e2e.NewSubnet(t, v1.SubnetSpec{Subnet: v4, Gateway: b + "1"}) // removed last, once its pools are gone
	ns := e2e.NewNamespace(t)
	annotations := map[string]string{v1.AnnotationSubnet: `{"ipv4":["` + subnet.Name + `"]}`, v1.AnnotationIPNumber: "+1"}
	dep := e2e.DeploymentOf(ns, "web", 2, annotations)
	if err := e2e.Suite.Client.Create(e2e.Ctx(t), dep); err != nil {
		t.Fatal(err)
	}
	poolName := apppool.Workload{Kind: "Deployment", Namespace: ns, Name: "web"}.PoolName(v1.IPv4)
	e2e.WaitPoolSize(t, poolName, 3)

	// a pod of the Deployment (owned by its ReplicaSet), also offered a network pool
	netPool := e2e.NewPool(t, v1.IPPoolSpec{Subnet: func() string { s, _, _ := e2e.NextSubnet(); return s }()})
	podLabels := map[string]string{"app": "web", "pod-template-hash": "7c9d"}
	owner := &metav1.OwnerReference{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "web-7c9d", UID: "rs-uid", Controller: ptr.To(true)}
	pod := e2e.NewPod(t, ns, "web-7c9d-x1", annotations, podLabels, owner)
	resp, err := e2e.AllocateFor(t, pod, "net1", netPool.Name)
	if err != nil || resp.IPs[0].Pool != poolName {
		t.Fatalf("the Deployment's pod got %+v (%v), want an address from %s", resp, err, poolName)
	}
	addr := resp.IPs[0].Address

	if err := e2e.Suite.Client.Get(e2e.Ctx(t), client.ObjectKeyFromObject(dep), dep); err != nil {
		t.Fatal(err)
	}
	dep.Spec.Replicas = ptr.To[int32](4)
	if err := e2e.Suite.Client.Update(e2e.Ctx(t), dep); err != nil {
		t.Fatal(err)
	}
	e2e.WaitPoolSize(t, poolName, 5)
	again, err := e2e.AllocateFor(t, pod, "net1", netPool.Name)
	if err != nil || again.IPs[0].Address != addr {
		t.Fatalf("after scaling the pod's address moved: %v (%v), was %s", again, err, addr)
	}

	sts := e2e.StatefulSetOf(ns, "db", 1, map[string]string{v1.AnnotationSubnet: `{"ipv4":["` + subnet.Name + `"]}`, v1.AnnotationReclaim: "false"})
	if err := e2e.Suite.Client.Create(e2e.Ctx(t), sts); err != nil {
		t.Fatal(err)
	}
	stsPool := apppool.Workload{Kind: "StatefulSet", Namespace: ns, Name: "db"}.PoolName(v1.IPv4)
	e2e.WaitPoolSize(t, stsPool, 1)
	t.Cleanup(func() {
		_ = e2e.Suite.Client.Delete(context.Background(), &v1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: stsPool}})
	})

	if err := e2e.Suite.Client.Delete(e2e.Ctx(t), sts); err != nil {
		t.Fatal(err)
	}
	if err := e2e.Suite.Client.Delete(e2e.Ctx(t), dep); err != nil {
		t.Fatal(err)
	}
	e2e.ReleaseAll(t, ns)
	e2e.WaitGone(t, "the Deployment's pool to go with it", &v1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: poolName}})
	// both deletions were handled by the same controller loop; the kept pool must remain
	if err := e2e.Suite.Client.Get(e2e.Ctx(t), client.ObjectKey{Name: stsPool}, &v1.IPPool{}); err != nil {
		t.Fatalf("the StatefulSet's pool (ippool-reclaim: false) is gone: %v", err)
	}
	if err := e2e.Suite.Client.Delete(e2e.Ctx(t), subnet); err == nil || !strings.Contains(err.Error(), "orphan IPPools "+stsPool) {
		t.Fatalf("deleting the Subnet under a kept pool: %v", err)
	}
}

// A multi-NIC workload names a Subnet per interface (ipam.underpool.io/subnets): each
// interface gets its own application pool, carved from its own Subnet.
func TestApplicationPoolsPerInterface(t *testing.T) {
	mkSubnet := func() *v1.Subnet {
		v4, _, _ := e2e.NextSubnet()
		return e2e.NewSubnet(t, v1.SubnetSpec{Subnet: v4})
	}
	s1, s2 := mkSubnet(), mkSubnet()
	ns := e2e.NewNamespace(t)
	annotations := map[string]string{v1.AnnotationSubnets: `[{"interface":"net1","ipv4":["` + s1.Name + `"]},{"interface":"net2","ipv4":["` + s2.Name + `"]}]`}
	dep := e2e.DeploymentOf(ns, "mn", 2, annotations)
	if err := e2e.Suite.Client.Create(e2e.Ctx(t), dep); err != nil {
		t.Fatal(err)
	}
	w := apppool.Workload{Kind: "Deployment", Namespace: ns, Name: "mn"}
	e2e.WaitPoolSize(t, w.PoolNameFor("net1", v1.IPv4), 2)
	e2e.WaitPoolSize(t, w.PoolNameFor("net2", v1.IPv4), 2)
	owner := &metav1.OwnerReference{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "mn-5f6", UID: "rs-mn", Controller: ptr.To(true)}
	pod := e2e.NewPod(t, ns, "mn-5f6-a", annotations, map[string]string{"app": "mn", "pod-template-hash": "5f6"}, owner)
	for _, ifName := range []string{"net1", "net2"} {
		if got := e2e.AllocPool(t, pod, ifName); got != w.PoolNameFor(ifName, v1.IPv4) {
			t.Fatalf("%s from %s, want %s", ifName, got, w.PoolNameFor(ifName, v1.IPv4))
		}
	}
	if err := e2e.Suite.Client.Delete(e2e.Ctx(t), dep); err != nil {
		t.Fatal(err)
	}
	e2e.ReleaseAll(t, ns)
	for _, ifName := range []string{"net1", "net2"} {
		name := w.PoolNameFor(ifName, v1.IPv4)
		e2e.WaitGone(t, "pool "+name+" to go with the Deployment", &v1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: name}})
	}
}
