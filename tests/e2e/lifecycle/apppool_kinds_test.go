package lifecycle

import (
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/core/apppool"
	"github.com/underpool/underpool/tests/e2e"
)

// Application pools for every workload kind the real controllers run here (DaemonSet,
// Job, CronJob, bare ReplicaSet; Deployments and StatefulSets are in
// application_pools_test.go and apppool_test.go): for each, the pool is carved from the
// Subnet its pod template names, the pods the kubelet stand-ins run through multus get
// their addresses from it, it follows the workload's size, and it goes with the workload.

// appSubnet makes a Subnet of a /24 of the test's own, removed when the test ends (after
// its pools: made before them), and returns it with the prefix its addresses start with.
func appSubnet(t *testing.T, ips ...string) (*v1.Subnet, string) {
	t.Helper()
	v4, _, _ := e2e.NextSubnet()
	base := strings.TrimSuffix(v4, "0/24")
	var full []string
	for _, r := range ips {
		full = append(full, base+strings.ReplaceAll(r, "-", "-"+base))
	}
	return e2e.NewSubnet(t, v1.SubnetSpec{Subnet: v4, Gateway: base + "1", IPs: full}), base
}

// onSubnets is the annotations of a pod template naming Subnets for its application pool.
func onSubnets(subnets ...*v1.Subnet) map[string]string {
	var names []string
	for _, s := range subnets {
		names = append(names, `"`+s.Name+`"`)
	}
	return map[string]string{v1.AnnotationSubnet: `{"ipv4":[` + strings.Join(names, ",") + `]}`}
}

// servedFrom waits until exactly want pods of app run (Ready, none being deleted beside
// them), each holding on net1 an address of pool, and returns their addresses by name.
func (lc *lifecycle) servedFrom(app string, want int, pool string) map[string]string {
	lc.t.Helper()
	var held map[string]string
	lc.eventually(fmt.Sprintf("%d pods of %s running with addresses of %s", want, app, pool), 2*time.Minute, func() (bool, string) {
		held = map[string]string{}
		addrs := lc.addresses()
		var states []string
		live := 0
		for _, p := range lc.pods(app) {
			if p.DeletionTimestamp != nil {
				continue
			}
			live++
			states = append(states, fmt.Sprintf("%s:%s/%q", p.Name, p.Status.Phase, addrs[p.Name]))
			if a := addrs[p.Name]; a != "" && lc.readyNamed(app, p.Name) && e2e.PoolHolds(lc.t, pool, a) {
				held[p.Name] = a
			}
		}
		sort.Strings(states)
		return live == want && len(held) == want, strings.Join(states, " ")
	})
	return held
}

func (lc *lifecycle) readyNamed(app, name string) bool {
	for _, p := range lc.readyPods(app) {
		if p.Name == name {
			return true
		}
	}
	return false
}

// requireKept fails unless each pod of before still holds the same address.
func (lc *lifecycle) requireKept(before map[string]string, when string) {
	lc.t.Helper()
	now := lc.addresses()
	for pod, addr := range before {
		if now[pod] != addr {
			lc.t.Errorf("%s: pod %s holds %q, held %s before", when, pod, now[pod], addr)
		}
	}
}

// deleteWithDependents deletes a workload and lets the garbage collector take its pods
// (and Jobs) at once: a Job's or CronJob's DELETE orphans them unless told otherwise.
func (lc *lifecycle) deleteWithDependents(obj client.Object) {
	lc.t.Helper()
	if err := e2e.Suite.Client.Delete(e2e.Ctx(lc.t), obj, client.PropagationPolicy(metav1.DeletePropagationBackground)); err != nil {
		lc.t.Fatalf("deleting %s: %v", obj.GetName(), err)
	}
}

// waitPoolGone waits until the workload's pool is gone (its last address released).
func (lc *lifecycle) waitPoolGone(pool string) {
	lc.t.Helper()
	lc.eventually("application pool "+pool+" to go with its workload", 2*time.Minute, func() (bool, string) {
		err := e2e.Suite.Client.Get(e2e.Ctx(lc.t), client.ObjectKey{Name: pool}, &v1.IPPool{})
		return e2e.IsNotFound(err), fmt.Sprintf("get: %v", err)
	})
}

// patch applies a JSON merge patch to obj.
func (lc *lifecycle) patch(obj client.Object, patch string) {
	lc.t.Helper()
	if err := e2e.Suite.Client.Patch(e2e.Ctx(lc.t), obj, client.RawPatch("application/merge-patch+json", []byte(patch))); err != nil {
		lc.t.Fatalf("patching %s with %s: %v", obj.GetName(), patch, err)
	}
}

// A DaemonSet's pool is as large as the nodes it runs on: two nodes, two addresses, one
// per node's pod; a node taken out of its node selector takes its pod and its address
// with it and the pool shrinks, the other pod keeping its address; the pool goes with
// the DaemonSet.
func TestADaemonSetsApplicationPoolFollowsItsNodes(t *testing.T) {
	subnet, base := appSubnet(t)
	group := "ds-" + rand.String(5)
	lc := newLifecycle(t, lifecycleOptions{nodes: 2, nodeLabels: func(int) map[string]string { return map[string]string{"underpool-test": group} }})
	ds := e2e.DaemonSetOf(lc.ns, "agent", lc.onNetwork(onSubnets(subnet)))
	ds.Spec.Template.Spec.NodeSelector = map[string]string{"underpool-test": group}
	ds.Spec.Template.Spec.TerminationGracePeriodSeconds = ptr.To[int64](lifecycleGrace)
	lc.create(ds)
	pool := apppool.Workload{Kind: apppool.KindDaemonSet, Namespace: lc.ns, Name: "agent"}.PoolName(v1.IPv4)
	e2e.WaitPoolSize(t, pool, 2)
	held := lc.servedFrom("agent", 2, pool)
	for pod, addr := range held {
		if !strings.HasPrefix(addr, base) {
			t.Fatalf("%s holds %s, not an address of Subnet %s", pod, addr, subnet.Name)
		}
	}
	lc.requireInvariants(pool)

	// the second node leaves the selector: its pod goes, and the pool shrinks
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: lc.nodes[1].name}}
	lc.patch(node, `{"metadata":{"labels":{"underpool-test":null}}}`)
	e2e.WaitPoolSize(t, pool, 1)
	left := lc.servedFrom("agent", 1, pool)
	lc.requireKept(left, "after the DaemonSet left a node")
	lc.requireInvariants(pool)

	lc.deleteWithDependents(ds)
	lc.waitPoolGone(pool)
	lc.requireNothingLeft()
}

// A Job's pool is as large as the pods it runs at once (spec.parallelism), grows with it,
// and goes with the Job.
func TestAJobsApplicationPoolFollowsItsParallelism(t *testing.T) {
	subnet, _ := appSubnet(t)
	lc := newLifecycle(t, lifecycleOptions{})
	job := e2e.JobOf(lc.ns, "batch", 2, lc.onNetwork(onSubnets(subnet)))
	job.Spec.Template.Spec.TerminationGracePeriodSeconds = ptr.To[int64](lifecycleGrace)
	lc.create(job)
	pool := apppool.Workload{Kind: apppool.KindJob, Namespace: lc.ns, Name: "batch"}.PoolName(v1.IPv4)
	e2e.WaitPoolSize(t, pool, 2)
	before := lc.servedFrom("batch", 2, pool)
	lc.requireInvariants(pool)

	lc.patch(job, `{"spec":{"parallelism":3}}`)
	e2e.WaitPoolSize(t, pool, 3)
	lc.servedFrom("batch", 3, pool)
	lc.requireKept(before, "after the Job's parallelism grew")
	lc.requireInvariants(pool)

	lc.deleteWithDependents(job)
	lc.waitPoolGone(pool)
	lc.requireNothingLeft()
}

// A CronJob gets one pool, sized to its jobTemplate's parallelism (+1 here), before its
// first Job runs; the Job's pod, which names only its Job, gets its address from the
// CronJob's pool (ipamd reads the Job to learn its CronJob); the pool follows the
// jobTemplate and goes with the CronJob and its Jobs. The real CronJob controller starts
// the Job at the next minute: at most about 70 s of waiting.
func TestACronJobsApplicationPoolServesItsJobs(t *testing.T) {
	subnet, _ := appSubnet(t)
	lc := newLifecycle(t, lifecycleOptions{})
	ann := onSubnets(subnet)
	ann[v1.AnnotationIPNumber] = "+1"
	cj := e2e.CronJobOf(lc.ns, "nightly", "* * * * *", 1, lc.onNetwork(ann))
	cj.Spec.JobTemplate.Spec.Template.Spec.TerminationGracePeriodSeconds = ptr.To[int64](lifecycleGrace)
	lc.create(cj)
	pool := apppool.Workload{Kind: apppool.KindCronJob, Namespace: lc.ns, Name: "nightly"}.PoolName(v1.IPv4)
	e2e.WaitPoolSize(t, pool, 2)

	lc.eventually("the CronJob's first Job", 75*time.Second, func() (bool, string) {
		n := len(lc.pods("nightly"))
		return n > 0, fmt.Sprintf("%d pods", n)
	})
	first := lc.servedFrom("nightly", 1, pool)
	for pod := range first {
		p := &corev1.Pod{}
		if err := e2e.Suite.Client.Get(e2e.Ctx(t), client.ObjectKey{Namespace: lc.ns, Name: pod}, p); err != nil {
			t.Fatal(err)
		}
		if ref := metav1.GetControllerOf(p); ref == nil || ref.Kind != "Job" {
			t.Fatalf("pod %s is controlled by %+v, want a Job of the CronJob", pod, ref)
		}
	}
	lc.requireInvariants(pool)

	lc.patch(cj, `{"spec":{"jobTemplate":{"spec":{"parallelism":3}}}}`)
	e2e.WaitPoolSize(t, pool, 4)
	lc.requireKept(first, "after the jobTemplate's parallelism grew")

	lc.deleteWithDependents(cj)
	lc.waitPoolGone(pool)
	lc.requireNothingLeft()
}

// A ReplicaSet of its own (no Deployment above it) gets its own pool, sized to its
// replicas, growing with them, gone with it.
func TestABareReplicaSetsApplicationPoolFollowsItsReplicas(t *testing.T) {
	subnet, _ := appSubnet(t)
	lc := newLifecycle(t, lifecycleOptions{})
	rs := e2e.ReplicaSetOf(lc.ns, "bare", 2, lc.onNetwork(onSubnets(subnet)))
	rs.Spec.Template.Spec.TerminationGracePeriodSeconds = ptr.To[int64](lifecycleGrace)
	lc.create(rs)
	pool := apppool.Workload{Kind: apppool.KindReplicaSet, Namespace: lc.ns, Name: "bare"}.PoolName(v1.IPv4)
	e2e.WaitPoolSize(t, pool, 2)
	before := lc.servedFrom("bare", 2, pool)
	lc.requireInvariants(pool)

	lc.scale(rs, 3)
	e2e.WaitPoolSize(t, pool, 3)
	lc.servedFrom("bare", 3, pool)
	lc.requireKept(before, "after scaling up")
	lc.requireInvariants(pool)

	lc.deleteWithDependents(rs)
	lc.waitPoolGone(pool)
	lc.requireNothingLeft()
}

// Every Subnet named is used in order. A Deployment whose first Subnet is too small gets
// its pool from the second, labelled with it, and its pods get addresses of it. Another,
// whose pool fits the first Subnet, stays there when it outgrows it: its pod keeps its
// address, the Deployment is told (AppPoolNoRoom), and the pods that do not fit wait;
// scaled back into the Subnet, they all run.
func TestApplicationPoolsFallBackToTheNextSubnetWithRoom(t *testing.T) {
	small, smallBase := appSubnet(t, "10-11") // two addresses
	roomy, roomyBase := appSubnet(t)
	lc := newLifecycle(t, lifecycleOptions{})
	big := lc.deployment("big", 3, onSubnets(small, roomy))
	lc.create(big)
	bigPool := apppool.Workload{Kind: apppool.KindDeployment, Namespace: lc.ns, Name: "big"}.PoolName(v1.IPv4)
	e2e.WaitPoolSize(t, bigPool, 3)
	if got := e2e.FreshPool(t, bigPool).Labels[apppool.LabelSubnet]; got != roomy.Name {
		t.Fatalf("pool %s records Subnet %q, want %s (%s is too small)", bigPool, got, roomy.Name, small.Name)
	}
	for pod, addr := range lc.servedFrom("big", 3, bigPool) {
		if !strings.HasPrefix(addr, roomyBase) {
			t.Fatalf("%s holds %s, not an address of Subnet %s", pod, addr, roomy.Name)
		}
	}

	one := lc.deployment("one", 1, onSubnets(small, roomy))
	lc.create(one)
	onePool := apppool.Workload{Kind: apppool.KindDeployment, Namespace: lc.ns, Name: "one"}.PoolName(v1.IPv4)
	e2e.WaitPoolSize(t, onePool, 1)
	first := lc.servedFrom("one", 1, onePool)
	for pod, addr := range first {
		if !strings.HasPrefix(addr, smallBase) {
			t.Fatalf("%s holds %s, want an address of the first Subnet %s", pod, addr, small.Name)
		}
	}
	lc.requireInvariants(bigPool, onePool)

	lc.scale(one, 3) // three do not fit the two addresses of the first Subnet
	lc.eventually("an AppPoolNoRoom event on Deployment one", time.Minute, func() (bool, string) {
		evs := e2e.EventsAbout(t, "Deployment", "one", "AppPoolNoRoom")
		return len(evs) > 0 && strings.Contains(evs[0].Message, "stays in Subnet "+small.Name), fmt.Sprintf("%d events", len(evs))
	})
	if p := e2e.FreshPool(t, onePool); p.Labels[apppool.LabelSubnet] != small.Name || !strings.HasPrefix(p.Spec.Subnet, smallBase) {
		t.Fatalf("pool %s moved: Subnet %s (%s)", onePool, p.Labels[apppool.LabelSubnet], p.Spec.Subnet)
	}
	lc.requireKept(first, "after outgrowing the first Subnet")
	lc.requireInvariants(bigPool, onePool)

	lc.scale(one, 2)
	e2e.WaitPoolSize(t, onePool, 2)
	lc.servedFrom("one", 2, onePool)
	lc.requireKept(first, "after scaling back into the first Subnet")
	lc.requireInvariants(bigPool, onePool)

	lc.deleteAll(big, one)
	lc.waitPoolGone(bigPool)
	lc.waitPoolGone(onePool)
	lc.requireNothingLeft()
}
