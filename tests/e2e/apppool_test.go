package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/underpool/underpool/ipamd/allocator"
	v1 "github.com/underpool/underpool/ipamd/api/v1"
	"github.com/underpool/underpool/ipamd/apppool"
)

// Fixed-IP application pools: a Deployment naming a Subnet gets a pool carved from it,
// sized to its replicas +N and resized when it scales; its pods get addresses from it
// (ahead of the network's own pools); the pool goes with the Deployment, while a
// StatefulSet's pool marked ippool-reclaim: "false" stays.
func TestApplicationPoolsFollowTheirWorkload(t *testing.T) {
	v4, _, _ := nextSubnet()
	b := strings.TrimSuffix(v4, "0/24")
	subnet := &v1.Subnet{ObjectMeta: metav1.ObjectMeta{Name: "apps-" + rand.String(5)}, Spec: v1.SubnetSpec{Subnet: v4, Gateway: b + "1"}}
	if err := suite.client.Create(ctx(t), subnet); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = suite.client.Delete(context.Background(), subnet) }) // runs last, once its pools are gone
	ns := newNamespace(t)
	annotations := map[string]string{v1.AnnotationSubnet: `{"ipv4":["` + subnet.Name + `"]}`, v1.AnnotationIPNumber: "+1"}
	labels := map[string]string{"app": "web"}
	dep := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web"}, Spec: appsv1.DeploymentSpec{
		Replicas: ptr.To[int32](2), Selector: &metav1.LabelSelector{MatchLabels: labels},
		Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels, Annotations: annotations},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "pause"}}}}}}
	if err := suite.client.Create(ctx(t), dep); err != nil {
		t.Fatal(err)
	}
	poolName := apppool.Workload{Kind: "Deployment", Namespace: ns, Name: "web"}.PoolName(v1.IPv4)
	waitPoolSize(t, poolName, 3)

	// a pod of the Deployment (owned by its ReplicaSet), also offered a network pool
	netPool := newPool(t, v1.IPPoolSpec{Subnet: func() string { s, _, _ := nextSubnet(); return s }()})
	podLabels := map[string]string{"app": "web", "pod-template-hash": "7c9d"}
	owner := &metav1.OwnerReference{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "web-7c9d", UID: "rs-uid", Controller: ptr.To(true)}
	pod := newPod(t, ns, "web-7c9d-x1", annotations, podLabels, owner)
	resp, err := allocateFor(t, pod, "net1", netPool.Name)
	if err != nil || resp.IPs[0].Pool != poolName {
		t.Fatalf("the Deployment's pod got %+v (%v), want an address from %s", resp, err, poolName)
	}
	addr := resp.IPs[0].Address

	if err := suite.client.Get(ctx(t), client.ObjectKeyFromObject(dep), dep); err != nil {
		t.Fatal(err)
	}
	dep.Spec.Replicas = ptr.To[int32](4)
	if err := suite.client.Update(ctx(t), dep); err != nil {
		t.Fatal(err)
	}
	waitPoolSize(t, poolName, 5)
	again, err := allocateFor(t, pod, "net1", netPool.Name)
	if err != nil || again.IPs[0].Address != addr {
		t.Fatalf("after scaling the pod's address moved: %v (%v), was %s", again, err, addr)
	}

	sts := &appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "db"}, Spec: appsv1.StatefulSetSpec{
		Replicas: ptr.To[int32](1), Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "db"}},
		Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "db"},
			Annotations: map[string]string{v1.AnnotationSubnet: `{"ipv4":["` + subnet.Name + `"]}`, v1.AnnotationReclaim: "false"}},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "pause"}}}}}}
	if err := suite.client.Create(ctx(t), sts); err != nil {
		t.Fatal(err)
	}
	stsPool := apppool.Workload{Kind: "StatefulSet", Namespace: ns, Name: "db"}.PoolName(v1.IPv4)
	waitPoolSize(t, stsPool, 1)
	t.Cleanup(func() {
		_ = suite.client.Delete(context.Background(), &v1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: stsPool}})
	})

	if err := suite.client.Delete(ctx(t), sts); err != nil {
		t.Fatal(err)
	}
	if err := suite.client.Delete(ctx(t), dep); err != nil {
		t.Fatal(err)
	}
	releaseAll(t, ns)
	waitFor(t, "the Deployment's pool to go with it", func() bool {
		return isNotFound(suite.client.Get(ctx(t), client.ObjectKey{Name: poolName}, &v1.IPPool{}))
	})
	// both deletions were handled by the same controller loop; the kept pool must remain
	if err := suite.client.Get(ctx(t), client.ObjectKey{Name: stsPool}, &v1.IPPool{}); err != nil {
		t.Fatalf("the StatefulSet's pool (ippool-reclaim: false) is gone: %v", err)
	}
	if err := suite.client.Delete(ctx(t), subnet); err == nil || !strings.Contains(err.Error(), "orphan IPPools "+stsPool) {
		t.Fatalf("deleting the Subnet under a kept pool: %v", err)
	}
}

func waitPoolSize(t *testing.T, name string, size uint64) {
	t.Helper()
	waitFor(t, fmt.Sprintf("pool %s to hold %d addresses", name, size), func() bool {
		p := &v1.IPPool{}
		if err := suite.client.Get(ctx(t), client.ObjectKey{Name: name}, p); err != nil {
			return false
		}
		view, err := allocator.NewPool(p.Name, &p.Spec)
		return err == nil && view.Usable.Count() == size
	})
}

// A multi-NIC workload names a Subnet per interface (ipam.underpool.io/subnets): each
// interface gets its own application pool, carved from its own Subnet.
func TestApplicationPoolsPerInterface(t *testing.T) {
	mkSubnet := func() *v1.Subnet {
		v4, _, _ := nextSubnet()
		s := &v1.Subnet{ObjectMeta: metav1.ObjectMeta{Name: "mn-" + rand.String(5)}, Spec: v1.SubnetSpec{Subnet: v4}}
		if err := suite.client.Create(ctx(t), s); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = suite.client.Delete(context.Background(), s) })
		return s
	}
	s1, s2 := mkSubnet(), mkSubnet()
	ns := newNamespace(t)
	annotations := map[string]string{v1.AnnotationSubnets: `[{"interface":"net1","ipv4":["` + s1.Name + `"]},{"interface":"net2","ipv4":["` + s2.Name + `"]}]`}
	labels := map[string]string{"app": "mn"}
	dep := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "mn"}, Spec: appsv1.DeploymentSpec{
		Replicas: ptr.To[int32](2), Selector: &metav1.LabelSelector{MatchLabels: labels},
		Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels, Annotations: annotations},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "pause"}}}}}}
	if err := suite.client.Create(ctx(t), dep); err != nil {
		t.Fatal(err)
	}
	w := apppool.Workload{Kind: "Deployment", Namespace: ns, Name: "mn"}
	waitPoolSize(t, w.PoolNameFor("net1", v1.IPv4), 2)
	waitPoolSize(t, w.PoolNameFor("net2", v1.IPv4), 2)
	owner := &metav1.OwnerReference{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "mn-5f6", UID: "rs-mn", Controller: ptr.To(true)}
	pod := newPod(t, ns, "mn-5f6-a", annotations, map[string]string{"app": "mn", "pod-template-hash": "5f6"}, owner)
	for _, ifName := range []string{"net1", "net2"} {
		if got := allocPool(t, pod, ifName); got != w.PoolNameFor(ifName, v1.IPv4) {
			t.Fatalf("%s from %s, want %s", ifName, got, w.PoolNameFor(ifName, v1.IPv4))
		}
	}
	if err := suite.client.Delete(ctx(t), dep); err != nil {
		t.Fatal(err)
	}
	releaseAll(t, ns)
	for _, ifName := range []string{"net1", "net2"} {
		name := w.PoolNameFor(ifName, v1.IPv4)
		waitFor(t, "pool "+name+" to go with the Deployment", func() bool {
			return isNotFound(suite.client.Get(ctx(t), client.ObjectKey{Name: name}, &v1.IPPool{}))
		})
	}
}
