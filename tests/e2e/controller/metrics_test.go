package controller

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/core/apppool"
	"github.com/underpool/underpool/rpc"
	"github.com/underpool/underpool/tests/e2e"
	"github.com/underpool/underpool/tests/harness"
	"github.com/underpool/underpool/tests/harness/kubelet"
)

// Every metric the README lists is scraped from the real endpoints after real traffic:
// CNI ADD/DEL through the meta-plugin to an ipamd serving /metrics, a recycled pod, an
// orphan, a webhook refusal and an application pool through the suite's controller.
func TestMetricsAfterRealTraffic(t *testing.T) {
	const node = "metrics-node"
	d, health := e2e.NodeWithIpamd(t, node, "--gc-interval=300ms", "--gc-grace=1s", "--gc-min-age=0")
	t.Setenv(kubelet.IpamdSocketEnv, d.Options.Socket) // the plugins call this node's ipamd

	v4, _, _ := e2e.NextSubnet()
	b := strings.TrimSuffix(v4, "0/24")
	pool := e2e.NewPool(t, v1.IPPoolSpec{Subnet: v4, Gateway: b + "1", IPs: []string{b + "10-" + b + "11"}}) // two addresses
	ns := e2e.NewNamespace(t)
	conf := func(pools ...string) []byte {
		return e2e.NetConf{Delegate: e2e.MacvlanOn(e2e.NewParent(t)), IPv4Pools: pools, Socket: d.Options.Socket}.Conflist(t)
	}
	full := conf(pool.Name)
	var rts []harness.Runtime
	for _, name := range []string{"m-a", "m-b"} {
		rt := e2e.RuntimeOf(e2e.NewPodOn(t, node, ns, name, nil, nil, nil), e2e.NewPodNS(t), "net1")
		if _, err := e2e.Suite.CNI.Add(e2e.Ctx(t), full, rt); err != nil {
			t.Fatalf("ADD %s: %v", name, err)
		}
		rts = append(rts, rt)
	}
	third := e2e.RuntimeOf(e2e.NewPodOn(t, node, ns, "m-c", nil, nil, nil), e2e.NewPodNS(t), "net1")
	if _, err := e2e.Suite.CNI.Add(e2e.Ctx(t), full, third); err == nil || !strings.Contains(err.Error(), "exhausted") {
		t.Fatalf("ADD into a full pool: %v, want exhausted", err)
	}
	if _, err := e2e.Suite.CNI.Add(e2e.Ctx(t), conf("no-such-pool"), third); err == nil {
		t.Fatal("ADD from a pool that does not exist succeeded")
	}
	if _, err := d.Client.Allocate(e2e.Ctx(t), &rpc.AllocateRequest{IfName: "net1", Pod: rpc.Pod{Namespace: ns, Name: "m-c"}}); err == nil {
		t.Fatal("an allocation without a container ID succeeded")
	}
	if err := e2e.Suite.CNI.Del(e2e.Ctx(t), full, rts[1]); err != nil {
		t.Fatalf("DEL: %v", err)
	}
	// a pod deleted while ipamd never heard its DEL: recycling frees its address
	gone := e2e.NewPodOn(t, node, ns, "m-gone", nil, nil, nil)
	if _, err := d.Client.Allocate(e2e.Ctx(t), &rpc.AllocateRequest{ContainerID: "ctr-gone", IfName: "net1", Network: "net",
		Pod: rpc.Pod{Namespace: ns, Name: gone.Name, UID: string(gone.UID)}, IPv4Pools: []string{pool.Name}}); err != nil {
		t.Fatalf("allocate for the pod to be deleted: %v", err)
	}
	if err := e2e.Suite.Client.Delete(e2e.Ctx(t), gone, client.GracePeriodSeconds(0)); err != nil {
		t.Fatal(err)
	}

	var m e2e.Metrics
	e2e.Eventually(t, "ipamd to recycle the deleted pod's address", 30*time.Second, func() (bool, string) {
		m = e2e.Scrape(t, health)
		v, ok := m.Get("underpool_ipamd_recycled_total", "reason", "pod-deleted")
		return ok && v >= 1, fmt.Sprintf("recycled_total = %v (%v)", v, ok)
	})
	p := pool.Name
	m.AtLeast(t, 2, "underpool_ipamd_requests_total", "op", "allocate", "result", "ok")
	m.AtLeast(t, 3, "underpool_ipamd_requests_total", "op", "allocate", "result", "error")
	m.AtLeast(t, 1, "underpool_ipamd_requests_total", "op", "release", "result", "ok")
	m.AtLeast(t, 6, "underpool_ipamd_request_seconds_count", "op", "allocate")
	m.AtLeast(t, 3, "underpool_pool_allocations_total", "pool", p, "result", "ok")
	m.AtLeast(t, 1, "underpool_pool_allocations_total", "pool", p, "result", "exhausted")
	m.AtLeast(t, 2, "underpool_pool_releases_total", "pool", p, "result", "ok") // the DEL and the recycle
	m.AtLeast(t, 1, "underpool_ipamd_allocation_failures_total", "kind", "exhausted")
	m.AtLeast(t, 1, "underpool_ipamd_allocation_failures_total", "kind", "no_eligible_pool")
	m.AtLeast(t, 1, "underpool_ipamd_allocation_failures_total", "kind", "bad_request")
	for _, kind := range []string{"conflict_retries_exhausted", "api_error", "pool_unusable"} {
		m.Equal(t, 0, "underpool_ipamd_allocation_failures_total", "kind", kind)
	}
	m.AtLeast(t, 5, "underpool_pool_commit_queue_wait_seconds_count")
	m.AtLeast(t, 4, "underpool_pool_commit_batch_size_count")
	m.AtLeast(t, 4, "underpool_pool_commit_seconds_count")
	m.AtLeast(t, 4, "underpool_pool_commits_total")
	// exported (its count under forced conflicts is proven by store's
	// TestConflictsBackOffWithJitterUntilTheyClear; here the controller's finalizer write
	// may or may not race a commit, so the value proves nothing)
	if _, ok := m.Get("underpool_pool_commit_conflicts_total"); !ok {
		t.Error("underpool_pool_commit_conflicts_total is not exported")
	}
	m.AtLeast(t, 1, "underpool_ipamd_informer_lag_seconds_count")
	// a write the informer delivered before the write's own answer came back counts 0
	if sum, _ := m.Get("underpool_ipamd_informer_lag_seconds_sum"); sum < 0 || sum > 30 {
		t.Errorf("informer lag sum %v s: want a delay between 0 and 30 s", sum)
	}
	m.Equal(t, 0, "underpool_pool_quarantined_addresses", "pool", p)
	m.Equal(t, 0, "underpool_ipamd_requests_in_flight", "op", "allocate")
	m.Equal(t, 0, "underpool_ipamd_requests_in_flight", "op", "release")
	// an attachment the runtime forgot (made through the socket, so libcni caches no result
	// to DEL first): a CNI GC whose valid list names only m-a releases it
	var network struct {
		Name string `json:"name"`
	}
	if err := json.Unmarshal(full, &network); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Client.Allocate(e2e.Ctx(t), &rpc.AllocateRequest{ContainerID: "ctr-forgotten", IfName: "net1", Network: network.Name,
		Pod: rpc.Pod{Namespace: ns, Name: "m-c", UID: string(third.PodUID)}, IPv4Pools: []string{pool.Name}}); err != nil {
		t.Fatalf("allocate for the attachment the runtime forgets: %v", err)
	}
	if err := e2e.Suite.CNI.GC(e2e.Ctx(t), full, []harness.Attachment{{ContainerID: rts[0].ContainerID, IfName: "net1"}}); err != nil {
		t.Fatalf("CNI GC: %v", err)
	}
	e2e.Eventually(t, "underpool_ipamd_gc_released_total = 1", 30*time.Second, func() (bool, string) {
		v, ok := e2e.Scrape(t, health).Get("underpool_ipamd_gc_released_total")
		return ok && v == 1, fmt.Sprintf("gc_released_total = %v (%v)", v, ok)
	})
	m.Equal(t, 1, "underpool_ipamd_ready")
	for _, resource := range []string{"ippools", "pods", "endpoints", "namespaces", "nodes"} {
		m.AtLeast(t, 1, "underpool_ipamd_watch_events_total", "resource", resource)
	}

	// the controller: capacity, a refused pool, an orphan, an application pool, the leader
	if err := e2e.Suite.Client.Create(e2e.Ctx(t), &v1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: harness.UniqueName("overlap")},
		Spec: v1.IPPoolSpec{Subnet: v4, IPs: []string{b + "11-" + b + "12"}}}); err == nil {
		t.Fatal("the webhook admitted a pool overlapping another")
	}
	orphanNet, _, _ := e2e.NextSubnet()
	orphanPool := e2e.NewPool(t, v1.IPPoolSpec{Subnet: orphanNet})
	e2e.MarkAllocated(t, orphanPool.Name, 7)
	appNet, _, _ := e2e.NextSubnet()
	subnet := e2e.NewSubnet(t, v1.SubnetSpec{Subnet: appNet, Gateway: strings.TrimSuffix(appNet, "0/24") + "1"})
	dep := e2e.DeploymentOf(ns, "metrics-web", 1, map[string]string{v1.AnnotationSubnet: `{"ipv4":["` + subnet.Name + `"]}`})
	if err := e2e.Suite.Client.Create(e2e.Ctx(t), dep); err != nil {
		t.Fatal(err)
	}
	appPool := apppool.Workload{Kind: "Deployment", Namespace: ns, Name: "metrics-web"}.PoolName(v1.IPv4)
	e2e.WaitPoolSize(t, appPool, 1)
	if err := e2e.Suite.Client.Get(e2e.Ctx(t), client.ObjectKeyFromObject(dep), dep); err != nil {
		t.Fatal(err)
	}
	dep.Spec.Replicas = ptr.To[int32](3)
	if err := e2e.Suite.Client.Update(e2e.Ctx(t), dep); err != nil {
		t.Fatal(err)
	}
	e2e.WaitPoolSize(t, appPool, 3)
	if err := e2e.Suite.Client.Delete(e2e.Ctx(t), dep); err != nil {
		t.Fatal(err)
	}
	e2e.WaitGone(t, "the Deployment's pool to go with it", &v1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: appPool}})

	// an Endpoint of a node that is gone, whose pod is gone too: the controller recycles it
	goneNode := &v1.Endpoint{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "m-gone-node", Finalizers: []string{v1.EndpointProtection}},
		Status: v1.EndpointStatus{Node: "metrics-gone-node", PodUID: "uid-gone-node", Interfaces: []v1.EndpointInterface{{
			ContainerID: "ctr-gone-node", Interface: "net1", PodUID: "uid-gone-node", Created: metav1.NewTime(time.Now().Add(-time.Hour)),
			IPs: []v1.EndpointIP{{Address: "10.250.253.9/24", Pool: "metrics-pool-gone-too"}}}}}}
	if err := e2e.Suite.Client.Create(e2e.Ctx(t), goneNode); err != nil {
		t.Fatal(err)
	}

	e2e.Eventually(t, "the controller to free the orphan and recycle the gone node's Endpoint", 90*time.Second, func() (bool, string) {
		m = e2e.Scrape(t, e2e.Suite.ControllerMetrics)
		v, ok := m.Get("underpool_orphans_freed_total")
		r, _ := m.Get("underpool_controller_recycled_total", "reason", "pod-deleted")
		return ok && v >= 1 && r >= 1, fmt.Sprintf("orphans_freed_total = %v (%v), controller_recycled_total{pod-deleted} = %v", v, ok, r)
	})
	e2e.WaitGone(t, "the gone node's Endpoint", goneNode)
	m.AtLeast(t, 1, "underpool_orphans_found_total")
	if _, ok := m.Get("underpool_orphan_unheld_addresses"); !ok {
		t.Error("underpool_orphan_unheld_addresses is missing")
	}
	held := e2e.FreshState(t, p).AllocatedIPCount
	m.Equal(t, 2, "underpool_ippool_total_addresses", "pool", p)
	m.Equal(t, float64(held), "underpool_ippool_allocated_addresses", "pool", p)
	m.Equal(t, 0, "underpool_ippool_quarantined_addresses", "pool", p)
	m.Equal(t, 253, "underpool_subnet_total_addresses", "subnet", subnet.Name)
	m.Equal(t, 0, "underpool_subnet_allocated_addresses", "subnet", subnet.Name) // its pool is gone
	m.Equal(t, 0, "underpool_subnet_quarantined_addresses", "subnet", subnet.Name)
	m.AtLeast(t, 1, "underpool_webhook_rejections_total", "kind", "IPPool", "reason", "overlap")
	m.AtLeast(t, 1, "underpool_webhook_rejections_total", "kind", "IPPool", "reason", "invalid_spec") // startController's probe
	m.AtLeast(t, 1, "underpool_application_pools_total", "action", "created")
	m.AtLeast(t, 1, "underpool_application_pools_total", "action", "resized")
	m.AtLeast(t, 1, "underpool_application_pools_total", "action", "deleted")
	m.Equal(t, 1, "underpool_controller_leader")
	if _, ok := m.Get("underpool_pools_overlapping"); !ok {
		t.Error("underpool_pools_overlapping is missing")
	}

	for _, rt := range rts[:1] {
		if err := e2e.Suite.CNI.Del(e2e.Ctx(t), full, rt); err != nil {
			t.Fatalf("DEL %s: %v", rt.PodName, err)
		}
	}
}
