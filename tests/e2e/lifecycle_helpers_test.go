package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/underpool/underpool/ipamd/allocator"
	v1 "github.com/underpool/underpool/ipamd/api/v1"
	"github.com/underpool/underpool/tests/harness"
	"github.com/underpool/underpool/tests/harness/kubelet"
)

// A cluster lifecycle for one test: simulated nodes, each with its own ipamd (recycling
// on, as deployed) and a kubelet stand-in that runs CNI through multus for the pods the
// real scheduler binds to it; a namespace with a NetworkAttachmentDefinition naming the
// underpool plugin over macvlan. Pods come from Deployments and StatefulSets the real
// controllers run, and go the way a kubelet lets them go.
type lifecycle struct {
	t     *testing.T
	ns    string
	nad   string
	nodes []*simNode
}

// simNode is one simulated node: its ipamd and its kubelet stand-in.
type simNode struct {
	name    string
	ipamd   *harness.Ipamd
	kubelet *kubelet.Kubelet
}

type lifecycleOptions struct {
	nodes int
	// ipv4Pools are the NAD's own pools.
	ipv4Pools []string
	// ipamdArgs replace the default recycling flags.
	ipamdArgs []string
	// nodeLabels per node index (optional).
	nodeLabels func(i int) map[string]string
}

// lifecycleRecycling is ipamd's recycling in lifecycle tests: fast, so a test sees an
// address of a gone pod come back within seconds.
var lifecycleRecycling = []string{"--gc-interval=1s", "--gc-grace=2s"}

func newLifecycle(t *testing.T, o lifecycleOptions) *lifecycle {
	t.Helper()
	if o.nodes == 0 {
		o.nodes = 1
	}
	if o.ipamdArgs == nil {
		o.ipamdArgs = lifecycleRecycling
	}
	lc := &lifecycle{t: t, ns: newNamespace(t), nad: "underlay"}
	lc.createNAD(newParent(t), o.ipv4Pools)
	conflist := multusConflist(t)
	for i := range o.nodes {
		name := "lc-" + rand.String(5)
		opts := harness.DefaultIpamdOptions(suite.bin, suite.cp.KubeconfigPath, name, suite.dir)
		opts.ExtraArgs = o.ipamdArgs
		d, err := harness.StartIpamd(opts)
		if err != nil {
			t.Fatalf("ipamd of %s: %v", name, err)
		}
		var labels map[string]string
		if o.nodeLabels != nil {
			labels = o.nodeLabels(i)
		}
		logFile, err := os.Create(filepath.Join(suite.dir, "kubelet-"+name+".log"))
		if err != nil {
			t.Fatal(err)
		}
		kl, err := kubelet.New(kubelet.Config{NodeName: name, RestConfig: suite.cp.Config, Labels: labels,
			CNI:      harness.CNI{BinDirs: suite.cni.BinDirs, CacheDir: filepath.Join(suite.dir, "cni-cache-"+name)},
			Conflist: conflist, IpamdSocket: opts.Socket, Log: logFile})
		if err == nil {
			err = kl.Start()
		}
		if err != nil {
			_ = d.Stop()
			t.Fatalf("kubelet stand-in of %s: %v", name, err)
		}
		n := &simNode{name: name, ipamd: d, kubelet: kl}
		lc.nodes = append(lc.nodes, n)
		t.Cleanup(func() {
			_ = kl.Close()
			_ = d.Stop()
			_ = logFile.Close()
			_ = suite.client.Delete(context.Background(), &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}})
		})
	}
	return lc
}

// createNAD makes the namespace's NetworkAttachmentDefinition: underpool over macvlan on
// master. The plugins run in the root netns (multus must reach the apiserver on
// loopback), so host connectivity stays off.
func (lc *lifecycle) createNAD(master string, ipv4Pools []string) {
	lc.t.Helper()
	conf := netConf{Name: lc.nad, Master: master, IPv4Pools: ipv4Pools}.conflist(lc.t)
	nad := &unstructured.Unstructured{}
	nad.SetGroupVersionKind(schema.GroupVersionKind{Group: "k8s.cni.cncf.io", Version: "v1", Kind: "NetworkAttachmentDefinition"})
	nad.SetNamespace(lc.ns)
	nad.SetName(lc.nad)
	nad.Object["spec"] = map[string]any{"config": string(conf)}
	if err := suite.client.Create(ctx(lc.t), nad); err != nil {
		lc.t.Fatalf("creating NAD: %v", err)
	}
}

// podTemplate is a pod on the namespace's underlay network. grace is its termination grace
// period; annotations are added to the networks annotation.
func (lc *lifecycle) podTemplate(app string, grace int64, annotations map[string]string) corev1.PodTemplateSpec {
	ann := map[string]string{"k8s.v1.cni.cncf.io/networks": lc.nad}
	for k, v := range annotations {
		ann[k] = v
	}
	return corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": app}, Annotations: ann},
		Spec: corev1.PodSpec{TerminationGracePeriodSeconds: ptr.To(grace),
			Containers: []corev1.Container{{Name: "c", Image: "pause"}}},
	}
}

func (lc *lifecycle) statefulSet(name string, replicas int32, grace int64) *appsv1.StatefulSet {
	lc.t.Helper()
	sts := &appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Namespace: lc.ns, Name: name}, Spec: appsv1.StatefulSetSpec{
		Replicas: ptr.To(replicas), Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": name}},
		Template: lc.podTemplate(name, grace, nil)}}
	return sts
}

func (lc *lifecycle) deployment(name string, replicas int32, grace int64) *appsv1.Deployment {
	return &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: lc.ns, Name: name}, Spec: appsv1.DeploymentSpec{
		Replicas: ptr.To(replicas), Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": name}},
		Template: lc.podTemplate(name, grace, nil)}}
}

func (lc *lifecycle) create(obj client.Object) {
	lc.t.Helper()
	if err := suite.client.Create(ctx(lc.t), obj); err != nil {
		lc.t.Fatalf("creating %T %s: %v", obj, obj.GetName(), err)
	}
}

// pods lists the namespace's pods with the label app=app.
func (lc *lifecycle) pods(app string) []corev1.Pod {
	lc.t.Helper()
	var list corev1.PodList
	if err := suite.client.List(ctx(lc.t), &list, client.InNamespace(lc.ns), client.MatchingLabels{"app": app}); err != nil {
		lc.t.Fatal(err)
	}
	sort.Slice(list.Items, func(i, j int) bool { return list.Items[i].Name < list.Items[j].Name })
	return list.Items
}

// eventually polls cond every 250ms until it holds or timeout passes; the failure names
// what was awaited and the last reason cond gave.
func (lc *lifecycle) eventually(what string, timeout time.Duration, cond func() (bool, string)) {
	lc.t.Helper()
	var last string
	err := wait.PollUntilContextTimeout(context.Background(), 250*time.Millisecond, timeout, true, func(context.Context) (bool, error) {
		ok, why := cond()
		last = why
		return ok, nil
	})
	if err != nil {
		lc.t.Fatalf("waiting %s for %s: %s", timeout, what, last)
	}
}

// waitReady waits until the pods of app are exactly want, all Running and Ready, none
// terminating; it returns them by name.
func (lc *lifecycle) waitReady(app string, want int) map[string]corev1.Pod {
	lc.t.Helper()
	var pods []corev1.Pod
	lc.eventually(fmt.Sprintf("%d ready pods of %s", want, app), 2*time.Minute, func() (bool, string) {
		pods = lc.pods(app)
		ready := 0
		var states []string
		for _, p := range pods {
			if p.DeletionTimestamp == nil && podReady(&p) {
				ready++
			}
			states = append(states, fmt.Sprintf("%s:%s/%s", p.Name, p.Status.Phase, p.Spec.NodeName))
		}
		return ready == want && len(pods) == want, strings.Join(states, " ")
	})
	out := map[string]corev1.Pod{}
	for _, p := range pods {
		out[p.Name] = p
	}
	return out
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// addresses returns what each pod's Endpoint holds on net1, by pod name.
func (lc *lifecycle) addresses() map[string]string {
	lc.t.Helper()
	out := map[string]string{}
	for _, ep := range endpoints(lc.t, lc.ns) {
		for _, itf := range ep.Status.Interfaces {
			if itf.Interface == "net1" && len(itf.IPs) > 0 {
				out[ep.Name] = itf.IPs[0].Address
			}
		}
	}
	return out
}

// sandboxAddress returns the global addresses on net1 in the pod's current sandbox.
func (lc *lifecycle) sandboxAddresses(node *simNode, pod string) []string {
	lc.t.Helper()
	sb, ok := node.kubelet.Sandbox(lc.ns, pod)
	if !ok {
		return nil
	}
	return globalAddrs(lc.t, sb.NetNS.Path(), "net1")
}

func globalAddrs(t *testing.T, nsPath, ifName string) []string {
	t.Helper()
	addrs, err := harness.Addrs(nsPath, ifName)
	if err != nil {
		return nil
	}
	var out []string
	for _, a := range addrs {
		if a.IP.IsGlobalUnicast() {
			out = append(out, a.IPNet.String())
		}
	}
	return out
}

// requireInvariants checks, after a test changed pods, what must hold at every moment:
// no address held by two attachments of any Endpoint in the cluster; every address in a
// live sandbox held by that very sandbox's attachment; each pool's status equal to what
// the Endpoints hold in it (waited for: a release in flight, an orphan the controller
// sweeps).
func (lc *lifecycle) requireInvariants(pools ...string) {
	lc.t.Helper()
	var all v1.EndpointList
	if err := suite.client.List(ctx(lc.t), &all); err != nil {
		lc.t.Fatal(err)
	}
	holder := map[string]string{}
	for _, ep := range all.Items {
		for _, itf := range ep.Status.Interfaces {
			for _, ip := range itf.IPs {
				who := fmt.Sprintf("%s/%s %s %.12s", ep.Namespace, ep.Name, itf.Interface, itf.ContainerID)
				if prev, dup := holder[ip.Address]; dup {
					lc.t.Errorf("INVARIANT: %s held twice: by %s and by %s", ip.Address, prev, who)
				}
				holder[ip.Address] = who
			}
		}
	}
	for _, n := range lc.nodes {
		for _, sb := range n.kubelet.Sandboxes() {
			ep := &v1.Endpoint{}
			err := suite.client.Get(ctx(lc.t), client.ObjectKey{Namespace: sb.PodNamespace, Name: sb.PodName}, ep)
			for _, addr := range globalAddrs(lc.t, sb.NetNS.Path(), "net1") {
				if err != nil || !holds(ep, sb.ContainerID, addr) {
					lc.t.Errorf("INVARIANT: pod %s/%s sandbox %.12s on %s has %s on net1, which its Endpoint does not hold for it (%v)",
						sb.PodNamespace, sb.PodName, sb.ContainerID, n.name, addr, err)
				}
			}
		}
	}
	for _, pool := range pools {
		lc.eventually("pool "+pool+" status = its Endpoints", 30*time.Second, func() (bool, string) {
			return poolMatchesEndpoints(lc.t, pool)
		})
	}
}

func holds(ep *v1.Endpoint, containerID, addr string) bool {
	for _, itf := range ep.Status.Interfaces {
		for _, ip := range itf.IPs {
			if itf.ContainerID == containerID && itf.Detached == nil && ip.Address == addr {
				return true
			}
		}
	}
	return false
}

// poolMatchesEndpoints compares a pool's allocated set with the union of what every
// Endpoint holds in it.
func poolMatchesEndpoints(t *testing.T, pool string) (bool, string) {
	t.Helper()
	p := freshPool(t, pool)
	view, err := allocator.NewPool(p.Name, &p.Spec)
	if err != nil {
		t.Fatalf("pool %s: %v", pool, err)
	}
	allocated, err := allocator.ParseRunSet(p.Status.Allocated)
	if err != nil {
		t.Fatalf("pool %s status: %v", pool, err)
	}
	var all v1.EndpointList
	if err := suite.client.List(ctx(t), &all); err != nil {
		t.Fatal(err)
	}
	var held allocator.RunSet
	for _, ep := range all.Items {
		for _, itf := range ep.Status.Interfaces {
			for _, ip := range itf.IPs {
				if ip.Pool != pool {
					continue
				}
				if o, ok := view.Offset(mustPrefix(t, ip.Address).Addr()); ok {
					held.Add(o)
				}
			}
		}
	}
	if allocated.String() != held.String() {
		return false, fmt.Sprintf("pool %s allocated %q, Endpoints hold %q", pool, allocated.String(), held.String())
	}
	return true, ""
}

// requireNothingLeft waits until the namespace holds no Endpoint and the pools hold no
// address, and no kubelet keeps a sandbox of the namespace.
func (lc *lifecycle) requireNothingLeft(pools ...string) {
	lc.t.Helper()
	lc.eventually("nothing left of namespace "+lc.ns, time.Minute, func() (bool, string) {
		if eps := endpoints(lc.t, lc.ns); len(eps) > 0 {
			return false, fmt.Sprintf("%d Endpoints left (%s ...)", len(eps), eps[0].Name)
		}
		for _, pool := range pools {
			if p := freshPool(lc.t, pool); p.Status.AllocatedIPCount != 0 {
				return false, fmt.Sprintf("pool %s holds %q", pool, p.Status.Allocated)
			}
		}
		for _, n := range lc.nodes {
			for _, sb := range n.kubelet.Sandboxes() {
				if sb.PodNamespace == lc.ns {
					return false, fmt.Sprintf("%s keeps a sandbox of %s", n.name, sb.PodName)
				}
			}
		}
		return true, ""
	})
}

// scale sets a StatefulSet's or Deployment's replicas.
func (lc *lifecycle) scale(obj client.Object, replicas int32) {
	lc.t.Helper()
	patch := client.RawPatch("application/merge-patch+json", []byte(fmt.Sprintf(`{"spec":{"replicas":%d}}`, replicas)))
	if err := suite.client.Patch(ctx(lc.t), obj, patch); err != nil {
		lc.t.Fatalf("scaling %s to %d: %v", obj.GetName(), replicas, err)
	}
}

// rollingRestart does what `kubectl rollout restart` does: a new template annotation.
func (lc *lifecycle) rollingRestart(obj client.Object) {
	lc.t.Helper()
	patch := client.RawPatch("application/merge-patch+json", []byte(fmt.Sprintf(
		`{"spec":{"template":{"metadata":{"annotations":{"kubectl.kubernetes.io/restartedAt":%q}}}}}`, time.Now().Format(time.RFC3339Nano))))
	if err := suite.client.Patch(ctx(lc.t), obj, patch); err != nil {
		lc.t.Fatalf("restarting %s: %v", obj.GetName(), err)
	}
}

// node returns the simulated node a pod runs on.
func (lc *lifecycle) node(pod corev1.Pod) *simNode {
	lc.t.Helper()
	for _, n := range lc.nodes {
		if n.name == pod.Spec.NodeName {
			return n
		}
	}
	lc.t.Fatalf("pod %s is on %q, not on a simulated node", pod.Name, pod.Spec.NodeName)
	return nil
}

func mustPrefix(t *testing.T, s string) netip.Prefix {
	t.Helper()
	p, err := netip.ParsePrefix(s)
	if err != nil {
		t.Fatalf("%q is not an address with its prefix: %v", s, err)
	}
	return p
}
