package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/tests/e2e"
	"github.com/underpool/underpool/tests/harness"
	"github.com/underpool/underpool/tests/harness/kubelet"
)

// A DEL the runtime replays (a retry after a timeout, a restarted runtime going through
// its sandboxes again) comes after the address was freed and handed to another pod. It
// must free nothing: the record it named is gone, and the address belongs to the other
// pod now. The pool has a single address, so the other pod holds the very address the
// replayed DEL names. Two cases: another pod (a Deployment's replacement, another name)
// and the same pod name (a StatefulSet pod's successor, which took the address over).
// Each old sandbox's DEL is replayed through multus as the runtime ran it (multus' cache
// of the sandbox's delegates restored, as if its first DEL had never finished), then
// three more at once: one through multus, two straight to the underpool plugin with the
// NAD's config as multus hands it.
func TestSecondDelFreesNothing(t *testing.T) {
	v4, _, third := e2e.NextSubnet()
	pool := e2e.NewPool(t, v1.IPPoolSpec{Subnet: v4, IPs: []string{fmt.Sprintf("10.250.%d.20", third)}})
	lc := newLifecycle(t, lifecycleOptions{nodes: 2, ipv4Pools: []string{pool.Name}})

	t.Run("deployment", func(t *testing.T) {
		lc := lc.sub(t)
		dep := lc.deployment("first", 1, nil)
		lc.create(dep)
		old := lc.waitReady("first", 1)
		replay := lc.replayableDel(onlyPod(t, old))
		addr := lc.addresses()[replay.pod]
		lc.requireInvariants(pool.Name)

		// the pod goes (its DEL frees the address); the Deployment's next pod gets it
		if err := e2e.Suite.Client.Delete(e2e.Ctx(t), &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: lc.ns, Name: replay.pod}}); err != nil {
			t.Fatal(err)
		}
		next := lc.waitSuccessor("first", replay.uid, addr)
		lc.requireInvariants(pool.Name)

		replay.run()
		lc.requireKeeps(next, addr, pool.Name)
		lc.requireInvariants(pool.Name)

		lc.deleteAll(dep)
		lc.requireNothingLeft(pool.Name)
	})

	t.Run("statefulset", func(t *testing.T) {
		lc := lc.sub(t)
		sts := lc.statefulSet("web", 1)
		lc.create(sts)
		old := lc.waitReady("web", 1)
		replay := lc.replayableDel(onlyPod(t, old))
		addr := lc.addresses()["web-0"]
		lc.requireInvariants(pool.Name)

		// web-0 goes (its DEL keeps the address for the successor); the new web-0 takes it
		if err := e2e.Suite.Client.Delete(e2e.Ctx(t), &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: lc.ns, Name: "web-0"}}); err != nil {
			t.Fatal(err)
		}
		next := lc.waitSuccessor("web", replay.uid, addr)
		if next.Name != "web-0" {
			t.Fatalf("the successor is %s, want web-0", next.Name)
		}
		lc.requireInvariants(pool.Name)

		replay.run()
		lc.requireKeeps(next, addr, pool.Name)
		lc.requireInvariants(pool.Name)

		lc.deleteAll(sts)
		lc.requireNothingLeft(pool.Name)
	})
}

// waitSuccessor waits until app's only pod is another than the one with UID old, Ready,
// its Endpoint holding addr, and returns it.
func (lc *lifecycle) waitSuccessor(app, old, addr string) corev1.Pod {
	lc.t.Helper()
	var next corev1.Pod
	lc.eventually("the pod following "+old+" Ready with "+addr, 2*time.Minute, func() (bool, string) {
		pods := lc.pods(app)
		if len(pods) != 1 {
			return false, fmt.Sprintf("%d pods", len(pods))
		}
		next = pods[0]
		switch {
		case string(next.UID) == old:
			return false, "the old pod is still there"
		case next.DeletionTimestamp != nil || !harness.PodReady(&next):
			return false, fmt.Sprintf("%s is %s, not Ready", next.Name, next.Status.Phase)
		}
		return lc.addresses()[next.Name] == addr, "Endpoints: " + mapString(lc.addresses())
	})
	return next
}

// delReplay is everything a runtime needs to run a sandbox's DEL again: the sandbox, its
// node's CNI setup and multus' cache of its delegates, saved while the sandbox ran.
type delReplay struct {
	lc         *lifecycle
	node       *simNode
	pod, uid   string
	sb         kubelet.Sandbox
	multusFile string
	multusData []byte
	multusConf []byte
	nadConf    []byte
	cacheDir   string // for DELs straight to the plugin, as multus keeps its own
}

// replayableDel records what replaying the DEL of pod's current sandbox takes.
func (lc *lifecycle) replayableDel(pod corev1.Pod) *delReplay {
	lc.t.Helper()
	node := lc.node(pod)
	sb, ok := node.kubelet.Sandbox(lc.ns, pod.Name)
	if !ok {
		lc.t.Fatalf("pod %s has no sandbox on %s", pod.Name, node.name)
	}
	r := &delReplay{lc: lc, node: node, pod: pod.Name, uid: string(pod.UID), sb: sb,
		multusFile: filepath.Join(e2e.Suite.Dir, "multus-cache", sb.ContainerID), multusConf: e2e.MultusConflist(lc.t), cacheDir: lc.t.TempDir()}
	var err error
	if r.multusData, err = os.ReadFile(r.multusFile); err != nil {
		lc.t.Fatalf("multus' cache of sandbox %.12s: %v", sb.ContainerID, err)
	}
	r.nadConf = e2e.NADConfig(lc.t, lc.ns, lc.nad)
	return r
}

// nodeCNI is how the node's runtime runs plugins, as its kubelet stand-in does.
func (n *simNode) cni() *harness.CNI {
	return &harness.CNI{BinDirs: e2e.Suite.CNI.BinDirs, CacheDir: filepath.Join(e2e.Suite.Dir, "cni-cache-"+n.name),
		Env: []string{kubelet.IpamdSocketEnv + "=" + n.ipamd.Options.Socket}, Stderr: io.Discard} // plugins log to files too
}

func (r *delReplay) runtime(ifName string) harness.Runtime {
	return harness.Runtime{ContainerID: r.sb.ContainerID, NetNS: r.sb.NetNS.Path(), IfName: ifName,
		PodNamespace: r.sb.PodNamespace, PodName: r.sb.PodName, PodUID: string(r.sb.PodUID)}
}

// viaMultus runs the sandbox's DEL through multus, its delegates cache restored first.
func (r *delReplay) viaMultus(c context.Context) error {
	if err := os.WriteFile(r.multusFile, r.multusData, 0o600); err != nil {
		return err
	}
	return r.node.cni().Del(c, r.multusConf, r.runtime("eth0"))
}

// direct runs DEL of the sandbox's net1 straight through the NAD's config, as multus
// calls its delegate.
func (r *delReplay) direct(c context.Context) error {
	cni := r.node.cni()
	cni.CacheDir = r.cacheDir
	return cni.Del(c, r.nadConf, r.runtime("net1"))
}

// run replays the DEL once through multus, then three times at once; every replay must
// succeed (DEL is idempotent) and reach the underpool plugin.
func (r *delReplay) run() {
	t := r.lc.t
	t.Helper()
	before := pluginDels(t, r.sb.ContainerID)
	if err := r.viaMultus(e2e.Ctx(t)); err != nil {
		t.Fatalf("replayed DEL of %s's sandbox %.12s through multus: %v", r.pod, r.sb.ContainerID, err)
	}
	if got := pluginDels(t, r.sb.ContainerID); got <= before {
		t.Fatalf("the replayed DEL through multus did not reach the underpool plugin (%d DELs of %.12s logged before, %d after)",
			before, r.sb.ContainerID, got)
	}
	before = pluginDels(t, r.sb.ContainerID)
	var wg sync.WaitGroup
	errs := make([]error, 3)
	for i, del := range []func(context.Context) error{r.viaMultus, r.direct, r.direct} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = del(context.Background())
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("concurrent replayed DELs of %s's sandbox %.12s: %v", r.pod, r.sb.ContainerID, err)
	}
	if got := pluginDels(t, r.sb.ContainerID); got < before+2 {
		t.Fatalf("the concurrent replayed DELs did not reach the underpool plugin (%d DELs of %.12s logged before, %d after)",
			before, r.sb.ContainerID, got)
	}
}

// pluginDels counts the underpool plugin's completed DELs of a container.
func pluginDels(t *testing.T, containerID string) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(e2e.Suite.Dir, "plugin.log"))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, line := range strings.Split(string(b), "\n") {
		if strings.Contains(line, `"DEL done"`) && strings.Contains(line, containerID) {
			n++
		}
	}
	return n
}

// requireKeeps checks that pod still holds addr, alone: its Endpoint holds it for its
// current sandbox, the sandbox has it on net1, and the pool holds exactly what the
// Endpoints hold. It looks again after a few recycling rounds: a wrong release would show
// by then.
func (lc *lifecycle) requireKeeps(pod corev1.Pod, addr, pool string) {
	lc.t.Helper()
	check := func(when string) {
		lc.t.Helper()
		sb, ok := lc.node(pod).kubelet.Sandbox(lc.ns, pod.Name)
		if !ok {
			lc.t.Fatalf("%s: %s has no sandbox", when, pod.Name)
		}
		lc.requireOnly(pod.Name, sb, addr, when)
		p := e2e.SettledState(lc.t, pool)
		if ok, why := e2e.PoolMatchesEndpoints(lc.t, pool); !ok || p.AllocatedIPCount != 1 {
			lc.t.Fatalf("%s: pool %s holds %d (%q); %s", when, pool, p.AllocatedIPCount, p.Allocated, why)
		}
	}
	check("right after the replayed DELs")
	time.Sleep(4 * time.Second) // recycling runs every 1s with 2s grace; the sweeper every 500ms
	check("a few recycling rounds later")
}

// A sandbox restart whose DEL was lost (the node rebooted, the runtime forgot the old
// sandbox) gives a running pod a new sandbox ID: its ADD must take over the addresses the
// old sandbox held, not get new ones, and leave no record of the old sandbox behind (the
// pool has room for more, so a missed takeover shows as a second address). Then the same
// with the DEL run: a StatefulSet pod keeps its address (kept for it across the DEL); a
// Deployment's pod has exactly one address afterwards.
func TestLostDelNewSandboxTakesOverAddress(t *testing.T) {
	v4, _, third := e2e.NextSubnet()
	b := fmt.Sprintf("10.250.%d.", third)
	pool := e2e.NewPool(t, v1.IPPoolSpec{Subnet: v4, IPs: []string{b + "30-" + b + "33"}})
	lc := newLifecycle(t, lifecycleOptions{nodes: 1, ipv4Pools: []string{pool.Name}})
	dep := lc.deployment("solo", 1, nil)
	sts := lc.statefulSet("web", 1)
	lc.create(dep)
	lc.create(sts)
	pods := map[string]corev1.Pod{"solo": onlyPod(t, lc.waitReady("solo", 1)), "web": onlyPod(t, lc.waitReady("web", 1))}
	before := lc.addresses()
	if len(before) != 2 {
		t.Fatalf("Endpoints hold %v, want two addresses", before)
	}
	lc.requireInvariants(pool.Name)

	for _, runDel := range []bool{false, true} {
		for _, app := range []string{"solo", "web"} {
			pod := pods[app]
			node := lc.node(pod)
			old, ok := node.kubelet.Sandbox(lc.ns, pod.Name)
			if !ok {
				t.Fatalf("%s has no sandbox", pod.Name)
			}
			if err := node.kubelet.RestartSandbox(lc.ns, pod.Name, runDel); err != nil {
				t.Fatalf("restarting %s's sandbox (runDel %v): %v", pod.Name, runDel, err)
			}
			sb, ok := node.kubelet.Sandbox(lc.ns, pod.Name)
			if !ok || sb.ContainerID == old.ContainerID {
				t.Fatalf("%s: no new sandbox after the restart (old %.12s, now %.12s)", pod.Name, old.ContainerID, sb.ContainerID)
			}
			if _, err := os.Stat(old.NetNS.Path()); err == nil {
				t.Fatalf("%s: the old sandbox's netns %s is still there", pod.Name, old.NetNS.Path())
			}
			want := before[pod.Name]
			if runDel && app == "solo" {
				// its DEL freed the address; the new ADD got one, maybe another
				want = lc.addresses()[pod.Name]
				if want != before[pod.Name] {
					t.Logf("%s got %s for its new sandbox after the DEL (had %s)", pod.Name, want, before[pod.Name])
				}
				before[pod.Name] = want
			}
			lc.requireOnly(pod.Name, sb, want, fmt.Sprintf("after a sandbox restart (runDel %v)", runDel))
		}
		if got := e2e.FreshState(t, pool.Name).AllocatedIPCount; got != 2 {
			t.Fatalf("pool holds %d after the sandbox restarts (runDel %v), want 2", got, runDel)
		}
		lc.requireInvariants(pool.Name)
		// recycling must not take the takeover back: look again after a few rounds
		time.Sleep(4 * time.Second)
		for _, pod := range pods {
			sb, _ := lc.node(pod).kubelet.Sandbox(lc.ns, pod.Name)
			lc.requireOnly(pod.Name, sb, before[pod.Name], fmt.Sprintf("a few recycling rounds after the sandbox restarts (runDel %v)", runDel))
		}
		lc.requireInvariants(pool.Name)
	}

	for _, obj := range []client.Object{dep, sts} {
		if err := e2e.Suite.Client.Delete(e2e.Ctx(t), obj); err != nil {
			t.Fatal(err)
		}
	}
	lc.requireNothingLeft(pool.Name)
}

// Pods come and go fast on three nodes while every node's ipamd recycles: a Deployment
// scaled up and down without waiting, DELs running while recycling judges the same
// records. Then a node's kubelet dies, its Node is deleted (so every ipamd may recycle
// what its pods held) and its pods are force-deleted; the node comes back and DELs the
// sandboxes it still had, long after their addresses were recycled and handed out again.
// Then another node's kubelet dies and comes back at once, its DELs racing its own
// ipamd's recycling. All along, a watcher reads every Endpoint in the cluster: no address
// is ever held twice.
func TestDelsRacingRecyclingOnSeveralNodes(t *testing.T) {
	v4, _, third := e2e.NextSubnet()
	b := fmt.Sprintf("10.250.%d.", third)
	pool := e2e.NewPool(t, v1.IPPoolSpec{Subnet: v4, IPs: []string{b + "40-" + b + "63"}})
	lc := newLifecycle(t, lifecycleOptions{nodes: 3, ipv4Pools: []string{pool.Name}})
	const full = 8
	watch := e2e.WatchInvariants(t, e2e.HeldTwiceInCluster)
	defer watch.Stop()

	dep := lc.deployment("churn", full, nil)
	lc.create(dep)
	lc.waitReady("churn", full)
	lc.requireInvariants(pool.Name)

	churn := func(sizes ...int32) {
		for _, n := range sizes {
			lc.scale(dep, n)
			time.Sleep(time.Second) // not waiting for readiness: the point is overlap
		}
	}
	churn(1, full, 0, full, 2, full, 0, full)
	lc.waitReady("churn", full)
	watch.Check()
	lc.requireInvariants(pool.Name)

	// a node dies and is deleted; its pods are force-deleted, every ipamd may recycle
	// what they held, and their replacements get addresses on the other nodes
	victim := lc.busiestNode("churn")
	victim.kubelet.Stop()
	if err := e2e.Suite.Client.Delete(e2e.Ctx(t), &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: victim.name}}); err != nil {
		t.Fatal(err)
	}
	gone := lc.forceDeletePodsOn(victim, "churn")
	lc.eventually("the dead node's pods' Endpoints recycled", time.Minute, func() (bool, string) {
		left := lc.endpointsOf(gone)
		return len(left) == 0, fmt.Sprintf("still held: %v", left)
	})
	churn(3, full)
	lc.waitReady("churn", full)
	watch.Check()
	// the node comes back: its stand-in DELs the sandboxes of the pods that are gone
	if err := victim.kubelet.Start(); err != nil {
		t.Fatal(err)
	}
	lc.waitOrphansTornDown(victim)
	watch.Check()
	lc.requireInvariants(pool.Name)

	// another node's kubelet dies and comes back a recycling round later: its DELs race
	// its own ipamd's recycling of the same, force-deleted, pods
	victim = lc.busiestNode("churn")
	victim.kubelet.Stop()
	lc.forceDeletePodsOn(victim, "churn")
	time.Sleep(time.Second)
	if err := victim.kubelet.Start(); err != nil {
		t.Fatal(err)
	}
	churn(1, full)
	lc.waitOrphansTornDown(victim)
	lc.waitReady("churn", full)
	watch.Check()
	lc.requireInvariants(pool.Name)

	lc.scale(dep, 0)
	lc.eventually("every pod gone", 2*time.Minute, func() (bool, string) {
		n := len(lc.pods("churn"))
		return n == 0, fmt.Sprintf("%d pods", n)
	})
	watch.Stop()
	t.Logf("%d samples of every Endpoint taken; no address held twice", watch.Samples)
	lc.requireInvariants(pool.Name)
	lc.requireNothingLeft(pool.Name)
}

// busiestNode is the node running the most pods of app.
func (lc *lifecycle) busiestNode(app string) *simNode {
	lc.t.Helper()
	count := map[string]int{}
	for _, p := range lc.pods(app) {
		count[p.Spec.NodeName]++
	}
	nodes := append([]*simNode(nil), lc.nodes...)
	sort.SliceStable(nodes, func(i, j int) bool { return count[nodes[i].name] > count[nodes[j].name] })
	if count[nodes[0].name] == 0 {
		lc.t.Fatalf("no pod of %s runs on a simulated node", app)
	}
	return nodes[0]
}

// forceDeletePodsOn deletes the node's pods of app with grace period 0, as `kubectl
// delete --force` does, and returns their names.
func (lc *lifecycle) forceDeletePodsOn(node *simNode, app string) []string {
	lc.t.Helper()
	var names []string
	for _, p := range lc.pods(app) {
		if p.Spec.NodeName != node.name {
			continue
		}
		if err := e2e.Suite.Client.Delete(e2e.Ctx(lc.t), &p, client.GracePeriodSeconds(0)); err != nil && !e2e.IsNotFound(err) {
			lc.t.Fatalf("force-deleting %s: %v", p.Name, err)
		}
		names = append(names, p.Name)
	}
	if len(names) == 0 {
		lc.t.Fatalf("no pod of %s on %s to force-delete", app, node.name)
	}
	return names
}

// endpointsOf lists which of the named pods still have an Endpoint holding something.
func (lc *lifecycle) endpointsOf(pods []string) []string {
	lc.t.Helper()
	var left []string
	for _, ep := range e2e.Endpoints(lc.t, lc.ns) {
		for _, name := range pods {
			if ep.Name == name && len(ep.Status.Interfaces) > 0 {
				left = append(left, fmt.Sprintf("%s: %+v", name, ep.Status.Interfaces))
			}
		}
	}
	return left
}

// waitOrphansTornDown waits until the node keeps no sandbox of a pod that is gone.
func (lc *lifecycle) waitOrphansTornDown(node *simNode) {
	lc.t.Helper()
	lc.eventually(node.name+" tearing down the sandboxes of gone pods", time.Minute, func() (bool, string) {
		for _, sb := range node.kubelet.Sandboxes() {
			p := &corev1.Pod{}
			err := e2e.Suite.Client.Get(e2e.Ctx(lc.t), client.ObjectKey{Namespace: sb.PodNamespace, Name: sb.PodName}, p)
			if e2e.IsNotFound(err) || (err == nil && p.UID != sb.PodUID) {
				return false, fmt.Sprintf("sandbox %.12s of gone pod %s still up", sb.ContainerID, sb.PodName)
			}
		}
		return true, ""
	})
}
