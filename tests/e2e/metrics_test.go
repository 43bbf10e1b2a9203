package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/core/apppool"
	"github.com/underpool/underpool/rpc"
	"github.com/underpool/underpool/tests/harness"
	"github.com/underpool/underpool/tests/harness/kubelet"
)

// Every metric the README lists is scraped from the real endpoints after real traffic:
// CNI ADD/DEL through the meta-plugin to an ipamd serving /metrics, a recycled pod, an
// orphan, a webhook refusal and an application pool through the suite's controller.
func TestMetricsAfterRealTraffic(t *testing.T) {
	const node = "metrics-node"
	d, health := nodeWithIpamd(t, node, "--gc-interval=300ms", "--gc-grace=1s", "--gc-min-age=0")
	t.Setenv(kubelet.IpamdSocketEnv, d.Options.Socket) // the plugins call this node's ipamd

	v4, _, _ := nextSubnet()
	b := strings.TrimSuffix(v4, "0/24")
	pool := newPool(t, v1.IPPoolSpec{Subnet: v4, Gateway: b + "1", IPs: []string{b + "10-" + b + "11"}}) // two addresses
	ns := newNamespace(t)
	conf := func(pools ...string) []byte {
		return netConf{Delegate: macvlanOn(newParent(t)), IPv4Pools: pools, Socket: d.Options.Socket}.conflist(t)
	}
	full := conf(pool.Name)
	var rts []harness.Runtime
	for _, name := range []string{"m-a", "m-b"} {
		rt := runtimeOf(newPodOn(t, node, ns, name, nil, nil, nil), newPodNS(t), "net1")
		if _, err := suite.cni.Add(ctx(t), full, rt); err != nil {
			t.Fatalf("ADD %s: %v", name, err)
		}
		rts = append(rts, rt)
	}
	third := runtimeOf(newPodOn(t, node, ns, "m-c", nil, nil, nil), newPodNS(t), "net1")
	if _, err := suite.cni.Add(ctx(t), full, third); err == nil || !strings.Contains(err.Error(), "exhausted") {
		t.Fatalf("ADD into a full pool: %v, want exhausted", err)
	}
	if _, err := suite.cni.Add(ctx(t), conf("no-such-pool"), third); err == nil {
		t.Fatal("ADD from a pool that does not exist succeeded")
	}
	if _, err := d.Client.Allocate(ctx(t), &rpc.AllocateRequest{IfName: "net1", Pod: rpc.Pod{Namespace: ns, Name: "m-c"}}); err == nil {
		t.Fatal("an allocation without a container ID succeeded")
	}
	if err := suite.cni.Del(ctx(t), full, rts[1]); err != nil {
		t.Fatalf("DEL: %v", err)
	}
	// a pod deleted while ipamd never heard its DEL: recycling frees its address
	gone := newPodOn(t, node, ns, "m-gone", nil, nil, nil)
	if _, err := d.Client.Allocate(ctx(t), &rpc.AllocateRequest{ContainerID: "ctr-gone", IfName: "net1", Network: "net",
		Pod: rpc.Pod{Namespace: ns, Name: gone.Name, UID: string(gone.UID)}, IPv4Pools: []string{pool.Name}}); err != nil {
		t.Fatalf("allocate for the pod to be deleted: %v", err)
	}
	if err := suite.client.Delete(ctx(t), gone, client.GracePeriodSeconds(0)); err != nil {
		t.Fatal(err)
	}

	var m metricSet
	eventually(t, "ipamd to recycle the deleted pod's address", 30*time.Second, func() (bool, string) {
		m = scrape(t, health)
		v, ok := m.get("underpool_ipamd_recycled_total", "reason", "pod-deleted")
		return ok && v >= 1, fmt.Sprintf("recycled_total = %v (%v)", v, ok)
	})
	p := pool.Name
	m.atLeast(t, 2, "underpool_ipamd_requests_total", "op", "allocate", "result", "ok")
	m.atLeast(t, 3, "underpool_ipamd_requests_total", "op", "allocate", "result", "error")
	m.atLeast(t, 1, "underpool_ipamd_requests_total", "op", "release", "result", "ok")
	m.atLeast(t, 6, "underpool_ipamd_request_seconds_count", "op", "allocate")
	m.atLeast(t, 3, "underpool_pool_allocations_total", "pool", p, "result", "ok")
	m.atLeast(t, 1, "underpool_pool_allocations_total", "pool", p, "result", "exhausted")
	m.atLeast(t, 2, "underpool_pool_releases_total", "pool", p, "result", "ok") // the DEL and the recycle
	m.atLeast(t, 1, "underpool_ipamd_allocation_failures_total", "kind", "exhausted")
	m.atLeast(t, 1, "underpool_ipamd_allocation_failures_total", "kind", "no_eligible_pool")
	m.atLeast(t, 1, "underpool_ipamd_allocation_failures_total", "kind", "bad_request")
	for _, kind := range []string{"conflict_retries_exhausted", "api_error", "pool_unusable"} {
		m.equal(t, 0, "underpool_ipamd_allocation_failures_total", "kind", kind)
	}
	m.atLeast(t, 5, "underpool_pool_commit_queue_wait_seconds_count")
	m.atLeast(t, 4, "underpool_pool_commit_batch_size_count")
	m.atLeast(t, 4, "underpool_pool_commit_seconds_count")
	m.atLeast(t, 4, "underpool_pool_commits_total")
	m.atLeast(t, 0, "underpool_pool_commit_conflicts_total") // the controller's finalizer write may race a commit
	m.atLeast(t, 1, "underpool_ipamd_informer_lag_seconds_count")
	// a write the informer delivered before the write's own answer came back counts 0
	if sum, _ := m.get("underpool_ipamd_informer_lag_seconds_sum"); sum < 0 || sum > 30 {
		t.Errorf("informer lag sum %v s: want a delay between 0 and 30 s", sum)
	}
	m.equal(t, 0, "underpool_pool_quarantined_addresses", "pool", p)
	m.equal(t, 0, "underpool_ipamd_requests_in_flight", "op", "allocate")
	m.equal(t, 0, "underpool_ipamd_requests_in_flight", "op", "release")
	m.equal(t, 0, "underpool_ipamd_gc_released_total")
	m.equal(t, 1, "underpool_ipamd_ready")
	for _, resource := range []string{"ippools", "pods", "endpoints", "namespaces", "nodes"} {
		m.atLeast(t, 1, "underpool_ipamd_watch_events_total", "resource", resource)
	}

	// the controller: capacity, a refused pool, an orphan, an application pool, the leader
	if err := suite.client.Create(ctx(t), &v1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: harness.UniqueName("overlap")},
		Spec: v1.IPPoolSpec{Subnet: v4, IPs: []string{b + "11-" + b + "12"}}}); err == nil {
		t.Fatal("the webhook admitted a pool overlapping another")
	}
	orphanNet, _, _ := nextSubnet()
	orphanPool := newPool(t, v1.IPPoolSpec{Subnet: orphanNet})
	markAllocated(t, orphanPool.Name, 7)
	appNet, _, _ := nextSubnet()
	subnet := newSubnet(t, v1.SubnetSpec{Subnet: appNet, Gateway: strings.TrimSuffix(appNet, "0/24") + "1"})
	dep := deploymentOf(ns, "metrics-web", 1, map[string]string{v1.AnnotationSubnet: `{"ipv4":["` + subnet.Name + `"]}`})
	if err := suite.client.Create(ctx(t), dep); err != nil {
		t.Fatal(err)
	}
	appPool := apppool.Workload{Kind: "Deployment", Namespace: ns, Name: "metrics-web"}.PoolName(v1.IPv4)
	waitPoolSize(t, appPool, 1)
	if err := suite.client.Get(ctx(t), client.ObjectKeyFromObject(dep), dep); err != nil {
		t.Fatal(err)
	}
	dep.Spec.Replicas = ptr.To[int32](3)
	if err := suite.client.Update(ctx(t), dep); err != nil {
		t.Fatal(err)
	}
	waitPoolSize(t, appPool, 3)
	if err := suite.client.Delete(ctx(t), dep); err != nil {
		t.Fatal(err)
	}
	waitGone(t, "the Deployment's pool to go with it", &v1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: appPool}})

	// an Endpoint of a node that is gone, whose pod is gone too: the controller recycles it
	goneNode := &v1.Endpoint{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "m-gone-node", Finalizers: []string{v1.EndpointProtection}},
		Status: v1.EndpointStatus{Node: "metrics-gone-node", PodUID: "uid-gone-node", Interfaces: []v1.EndpointInterface{{
			ContainerID: "ctr-gone-node", Interface: "net1", PodUID: "uid-gone-node", Created: metav1.NewTime(time.Now().Add(-time.Hour)),
			IPs: []v1.EndpointIP{{Address: "10.250.253.9/24", Pool: "metrics-pool-gone-too"}}}}}}
	if err := suite.client.Create(ctx(t), goneNode); err != nil {
		t.Fatal(err)
	}

	eventually(t, "the controller to free the orphan and recycle the gone node's Endpoint", 90*time.Second, func() (bool, string) {
		m = scrape(t, suite.controllerMetrics)
		v, ok := m.get("underpool_orphans_freed_total")
		r, _ := m.get("underpool_controller_recycled_total", "reason", "pod-deleted")
		return ok && v >= 1 && r >= 1, fmt.Sprintf("orphans_freed_total = %v (%v), controller_recycled_total{pod-deleted} = %v", v, ok, r)
	})
	waitGone(t, "the gone node's Endpoint", goneNode)
	m.atLeast(t, 1, "underpool_orphans_found_total")
	if _, ok := m.get("underpool_orphan_unheld_addresses"); !ok {
		t.Error("underpool_orphan_unheld_addresses is missing")
	}
	held := freshPool(t, p).Status.AllocatedIPCount
	m.equal(t, 2, "underpool_ippool_total_addresses", "pool", p)
	m.equal(t, float64(held), "underpool_ippool_allocated_addresses", "pool", p)
	m.equal(t, 0, "underpool_ippool_quarantined_addresses", "pool", p)
	m.equal(t, 253, "underpool_subnet_total_addresses", "subnet", subnet.Name)
	m.equal(t, 0, "underpool_subnet_allocated_addresses", "subnet", subnet.Name) // its pool is gone
	m.equal(t, 0, "underpool_subnet_quarantined_addresses", "subnet", subnet.Name)
	m.atLeast(t, 1, "underpool_webhook_rejections_total", "kind", "IPPool", "reason", "overlap")
	m.atLeast(t, 1, "underpool_webhook_rejections_total", "kind", "IPPool", "reason", "invalid_spec") // startController's probe
	m.atLeast(t, 1, "underpool_application_pools_total", "action", "created")
	m.atLeast(t, 1, "underpool_application_pools_total", "action", "resized")
	m.atLeast(t, 1, "underpool_application_pools_total", "action", "deleted")
	m.equal(t, 1, "underpool_controller_leader")
	if _, ok := m.get("underpool_pools_overlapping"); !ok {
		t.Error("underpool_pools_overlapping is missing")
	}

	for _, rt := range rts[:1] {
		if err := suite.cni.Del(ctx(t), full, rt); err != nil {
			t.Fatalf("DEL %s: %v", rt.PodName, err)
		}
	}
}

// nodeWithIpamd makes a Node object and starts its ipamd with /metrics on a loopback
// address, which it returns; both go when the test ends.
func nodeWithIpamd(t *testing.T, node string, ipamdArgs ...string) (*harness.Ipamd, string) {
	t.Helper()
	if err := suite.client.Create(ctx(t), &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: node}}); err != nil {
		t.Fatal(err)
	}
	health, err := harness.FreeLoopbackAddress()
	if err != nil {
		t.Fatal(err)
	}
	o := harness.DefaultIpamdOptions(suite.bin, suite.cp.KubeconfigPath, node, suite.dir)
	o.HealthAddress = health
	o.ExtraArgs = append([]string{"--commit-window=" + commitWindow}, ipamdArgs...)
	d, err := harness.StartIpamd(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = d.Stop()
		_ = suite.client.Delete(context.Background(), &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: node}})
	})
	return d, health
}

// sample is one line of the text exposition format.
type sample struct {
	name   string
	labels map[string]string
	value  float64
}

type metricSet []sample

// scrape reads /metrics at addr. The exposition format is parsed by hand: our label
// values carry no commas, quotes or escapes.
func scrape(t *testing.T, addr string) metricSet {
	t.Helper()
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(c, http.MethodGet, "http://"+addr+"/metrics", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("scraping %s: %v", addr, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(resp.Body)
		t.Fatalf("scraping %s: %s: %s", addr, resp.Status, body)
	}
	var set metricSet
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("scraping %s: bad line %q", addr, line)
		}
		s := sample{name: line[:i], labels: map[string]string{}, value: v}
		if open := strings.IndexByte(s.name, '{'); open >= 0 {
			for _, kv := range strings.Split(strings.TrimSuffix(s.name[open+1:], "}"), ",") {
				if k, val, ok := strings.Cut(kv, "="); ok {
					s.labels[k] = strings.Trim(val, `"`)
				}
			}
			s.name = s.name[:open]
		}
		set = append(set, s)
	}
	return set
}

// get returns the value of the series with name and these label pairs (others ignored).
func (m metricSet) get(name string, labels ...string) (float64, bool) {
	for _, s := range m {
		if s.name != name {
			continue
		}
		match := true
		for i := 0; i+1 < len(labels); i += 2 {
			if s.labels[labels[i]] != labels[i+1] {
				match = false
			}
		}
		if match {
			return s.value, true
		}
	}
	return 0, false
}

func (m metricSet) names(prefix string) []string {
	seen := map[string]bool{}
	for _, s := range m {
		if strings.HasPrefix(s.name, prefix) {
			seen[s.name] = true
		}
	}
	out := make([]string, 0, len(seen))
	for n := range seen {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

func (m metricSet) atLeast(t *testing.T, min float64, name string, labels ...string) {
	t.Helper()
	v, ok := m.get(name, labels...)
	if !ok {
		t.Errorf("%s%v is missing; underpool series: %v", name, labels, m.names("underpool_"))
	} else if v < min {
		t.Errorf("%s%v = %v, want at least %v", name, labels, v, min)
	}
}

func (m metricSet) equal(t *testing.T, want float64, name string, labels ...string) {
	t.Helper()
	v, ok := m.get(name, labels...)
	if !ok {
		t.Errorf("%s%v is missing; underpool series: %v", name, labels, m.names("underpool_"))
	} else if v != want {
		t.Errorf("%s%v = %v, want %v", name, labels, v, want)
	}
}
