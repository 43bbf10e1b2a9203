package lifecycle

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/tests/e2e"
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
	// segments are the L2 segments the nodes' uplinks share, by uplink name
	segments map[string]*e2e.Segment
}

// simNode is one simulated node: its ipamd, its kubelet stand-in, and the netns standing
// for it, where multus and the plugins run (host veths, their routes and node-side rules
// land there, never in the machine's own netns).
type simNode struct {
	name    string
	ipamd   *harness.Ipamd
	kubelet *kubelet.Kubelet
	netns   *harness.NetNS
	// addrs are the node's own addresses (IPv4, IPv6), on its first uplink
	addrs [2]string
	// baseline is the node netns before any pod: what every DEL must leave it at
	baseline e2e.NodeState
}

type lifecycleOptions struct {
	nodes int
	// ipv4Pools are the NAD's own pools.
	ipv4Pools []string
	// ipamdArgs replace the default recycling flags.
	ipamdArgs []string
	// nodeLabels per node index (optional).
	nodeLabels func(i int) map[string]string
	// conflist replaces the nodes' multus conflist (optional).
	conflist []byte
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
	lc := &lifecycle{t: t, ns: e2e.NewNamespace(t), nad: "underlay", segments: map[string]*e2e.Segment{}}
	conflist := o.conflist
	if conflist == nil {
		conflist = e2e.MultusConflist(t)
	}
	_, _, nodeNet := e2e.NextSubnet() // the nodes' own addresses
	for i := range o.nodes {
		name := "lc-" + rand.String(5)
		node := newNodeNS(t)
		addrs := [2]string{fmt.Sprintf("10.250.%d.%d", nodeNet, i+2), fmt.Sprintf("fd00:250:0:%x::%x", nodeNet, i+2)}
		opts := harness.DefaultIpamdOptions(e2e.Suite.Bin, e2e.Suite.CP.KubeconfigPath, name, e2e.Suite.Dir)
		opts.ExtraArgs = append([]string{"--commit-window=" + e2e.CommitWindow}, o.ipamdArgs...)
		d, err := harness.StartIpamd(opts)
		if err != nil {
			t.Fatalf("ipamd of %s: %v", name, err)
		}
		var labels map[string]string
		if o.nodeLabels != nil {
			labels = o.nodeLabels(i)
		}
		logFile, err := os.Create(filepath.Join(e2e.Suite.Dir, "kubelet-"+name+".log"))
		if err != nil {
			t.Fatal(err)
		}
		kl, err := kubelet.New(kubelet.Config{NodeName: name, RestConfig: e2e.Suite.CP.Config, Labels: labels,
			CNI:       harness.CNI{BinDirs: e2e.Suite.CNI.BinDirs, CacheDir: filepath.Join(e2e.Suite.Dir, "cni-cache-"+name)},
			NodeNetNS: node, NodeIP: addrs[0], Conflist: conflist, IpamdSocket: opts.Socket, Log: logFile})
		if err == nil {
			err = kl.Start()
		}
		if err != nil {
			_ = d.Stop()
			t.Fatalf("kubelet stand-in of %s: %v", name, err)
		}
		n := &simNode{name: name, ipamd: d, kubelet: kl, netns: node, addrs: addrs}
		lc.nodes = append(lc.nodes, n)
		t.Cleanup(func() {
			_ = kl.Close()
			_ = d.Stop()
			_ = logFile.Close()
			_ = e2e.Suite.Client.Delete(context.Background(), &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}})
		})
	}
	lc.createNAD(lc.uplink(nodeUplink), o.ipv4Pools)
	return lc
}

// nodeUplink is every lifecycle node's first uplink, in each node netns under this name,
// carrying the node's addresses: the master of the namespace's NAD, and of any network a
// test configures on the nodes by hand.
const nodeUplink = "eth1"

// newNodeNS is a netns standing for a node: loopback up, no IPv6 duplicate address
// detection on its links (a link-local address turning from tentative to valid after the
// baseline was read would look like a leftover).
func newNodeNS(t *testing.T) *harness.NetNS {
	t.Helper()
	node := e2e.NewNodeNS(t)
	for _, key := range []string{"net.ipv6.conf.default.accept_dad=0", "net.ipv6.conf.all.accept_dad=0"} {
		if out, err := node.Run("sysctl", "-w", key); err != nil {
			t.Fatalf("%v %s", err, out)
		}
	}
	return node
}

// uplink gives every node a link named name (eth1, eth2, ...) on one L2 segment of its
// own, the first one also the nodes' addresses, and returns the name for a NAD's master.
// Every node has the same names, as nodes of one cluster have. The nodes' baselines are
// read again: an uplink is part of the node, not a pod's.
func (lc *lifecycle) uplink(name string) string {
	lc.t.Helper()
	if _, ok := lc.segments[name]; ok {
		return name
	}
	seg := e2e.NewSegment(lc.t)
	for _, n := range lc.nodes {
		seg.Attach(lc.t, n.netns, name)
		if len(lc.segments) == 0 {
			for i, a := range n.addrs {
				if err := harness.AddAddr(n.netns, name, a+[]string{"/24", "/64"}[i]); err != nil {
					lc.t.Fatal(err)
				}
			}
		}
	}
	lc.segments[name] = seg
	for _, n := range lc.nodes {
		// pods may run already (an uplink added mid-test): their host veths are theirs
		n.baseline = e2e.ReadNodeState(lc.t, n.netns).Without(n.liveHostVeths()...)
	}
	return name
}

// createNAD makes the namespace's NetworkAttachmentDefinition: underpool over macvlan on
// master. The plugins run in the nodes' netns, so host connectivity keeps its default:
// each pod gets a host veth to its node.
func (lc *lifecycle) createNAD(master string, ipv4Pools []string) {
	lc.t.Helper()
	lc.addNetwork(lc.nad, master, ipv4Pools)
}

// addNetwork makes another NetworkAttachmentDefinition in the lifecycle's namespace:
// underpool over macvlan on master (an uplink), with these pools. A pod template names it
// with the annotation k8s.v1.cni.cncf.io/networks.
func (lc *lifecycle) addNetwork(name, master string, ipv4Pools []string) {
	lc.t.Helper()
	lc.addNetConf(e2e.NetConf{Name: name, Delegate: e2e.MacvlanOn(master), IPv4Pools: ipv4Pools})
}

// addNetConf makes a NetworkAttachmentDefinition named c.Name in the lifecycle's
// namespace, its plugin running on the nodes.
func (lc *lifecycle) addNetConf(c e2e.NetConf) {
	lc.t.Helper()
	c.OnNode = true
	e2e.NewNAD(lc.t, lc.ns, c.Name, c.Conflist(lc.t))
}

// sub is the lifecycle for a subtest: same nodes, its own namespace and NAD on the same
// pools.
func (lc *lifecycle) sub(t *testing.T) *lifecycle {
	t.Helper()
	s := &lifecycle{t: t, ns: e2e.NewNamespace(t), nad: lc.nad, nodes: lc.nodes, segments: lc.segments}
	e2e.NewNAD(t, s.ns, s.nad, e2e.NADConfig(t, lc.ns, lc.nad))
	return s
}

// onNetwork is annotations for a pod on the namespace's underlay network (a
// k8s.v1.cni.cncf.io/networks key among them names another).
func (lc *lifecycle) onNetwork(annotations map[string]string) map[string]string {
	ann := map[string]string{"k8s.v1.cni.cncf.io/networks": lc.nad}
	for k, v := range annotations {
		ann[k] = v
	}
	return ann
}

// lifecycleGrace is the termination grace period of lifecycle pods, in seconds.
const lifecycleGrace = 1

// statefulSet is a StatefulSet of the namespace on its underlay network.
func (lc *lifecycle) statefulSet(name string, replicas int32) *appsv1.StatefulSet {
	sts := e2e.StatefulSetOf(lc.ns, name, replicas, lc.onNetwork(nil))
	sts.Spec.Template.Spec.TerminationGracePeriodSeconds = ptr.To[int64](lifecycleGrace)
	return sts
}

// deployment is a Deployment of the namespace on its underlay network, its pods also
// carrying annotations.
func (lc *lifecycle) deployment(name string, replicas int32, annotations map[string]string) *appsv1.Deployment {
	dep := e2e.DeploymentOf(lc.ns, name, replicas, lc.onNetwork(annotations))
	dep.Spec.Template.Spec.TerminationGracePeriodSeconds = ptr.To[int64](lifecycleGrace)
	return dep
}

func (lc *lifecycle) create(obj client.Object) {
	lc.t.Helper()
	if err := e2e.Suite.Client.Create(e2e.Ctx(lc.t), obj); err != nil {
		lc.t.Fatalf("creating %T %s: %v", obj, obj.GetName(), err)
	}
}

// pods lists the namespace's pods with the label app=app.
func (lc *lifecycle) pods(app string) []corev1.Pod {
	lc.t.Helper()
	var list corev1.PodList
	if err := e2e.Suite.Client.List(e2e.Ctx(lc.t), &list, client.InNamespace(lc.ns), client.MatchingLabels{"app": app}); err != nil {
		lc.t.Fatal(err)
	}
	sort.Slice(list.Items, func(i, j int) bool { return list.Items[i].Name < list.Items[j].Name })
	return list.Items
}

func (lc *lifecycle) eventually(what string, timeout time.Duration, cond func() (bool, string)) {
	lc.t.Helper()
	e2e.Eventually(lc.t, what, timeout, cond)
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
			if p.DeletionTimestamp == nil && harness.PodReady(&p) {
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

// addresses returns what each pod's Endpoint holds on net1, by pod name.
func (lc *lifecycle) addresses() map[string]string {
	lc.t.Helper()
	out := map[string]string{}
	for _, ep := range e2e.Endpoints(lc.t, lc.ns) {
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
	return harness.GlobalAddrs(sb.NetNS.Path(), "net1")
}

// attachments are the underpool interfaces (net1, net2, ...: every link but loopback and
// the host veths) of every live sandbox on the lifecycle's nodes.
func (lc *lifecycle) attachments() []e2e.Attachment {
	var out []e2e.Attachment
	for _, n := range lc.nodes {
		for _, sb := range n.kubelet.Sandboxes() {
			links, err := e2e.LinksIn(sb.NetNS)
			if err != nil {
				continue // torn down since it was listed
			}
			for _, ifName := range links {
				if ifName == "lo" || strings.HasPrefix(ifName, "host-") {
					continue
				}
				out = append(out, e2e.Attachment{Namespace: sb.PodNamespace, Pod: sb.PodName, ContainerID: sb.ContainerID,
					NetNS: sb.NetNS.Path(), IfName: ifName, Where: n.name})
			}
		}
	}
	return out
}

// requireInvariants is e2e.RequireInvariants over every live sandbox of the lifecycle's
// nodes, and on every node netns nothing but what its live sandboxes hold (waited for: a
// sandbox may be on its way up or down).
func (lc *lifecycle) requireInvariants(pools ...string) {
	lc.t.Helper()
	e2e.RequireInvariants(lc.t, lc.attachments(), pools...)
	lc.eventually("the nodes hold only what their live sandboxes hold", 30*time.Second, func() (bool, string) {
		left := lc.nodeLeftovers()
		return left == "", left
	})
}

// requireNothingLeft waits until the namespace holds no Endpoint and the pools hold no
// address, no kubelet keeps a sandbox of the namespace, and no node netns keeps anything a
// gone sandbox made.
func (lc *lifecycle) requireNothingLeft(pools ...string) {
	lc.t.Helper()
	lc.eventually("nothing left of namespace "+lc.ns, time.Minute, func() (bool, string) {
		left := e2e.Leftovers(lc.t, lc.ns, pools, lc.attachments())
		if left == "" {
			left = lc.nodeLeftovers()
		}
		return left == "", left
	})
}

// liveHostVeths names the node ends of the host veths of the node's live sandboxes.
func (n *simNode) liveHostVeths() []string {
	var live []string
	for _, sb := range n.kubelet.Sandboxes() {
		ends, _ := e2e.NodeEnds(sb.NetNS.Path(), n.netns.Path()) // a sandbox gone since: nothing of it is live
		live = append(live, ends...)
	}
	return live
}

// nodeLeftovers compares each node netns with its baseline, leaving out the host veths of
// the sandboxes still live there (of any namespace: subtests share nodes) and every route
// through them; it names what differs, "" when nothing does.
func (lc *lifecycle) nodeLeftovers() string {
	lc.t.Helper()
	var left []string
	for _, n := range lc.nodes {
		live := n.liveHostVeths()
		if d := n.baseline.Diff(e2e.ReadNodeState(lc.t, n.netns), live...); d != "" {
			left = append(left, "node "+n.name+" netns differs from before its pods (live host veths "+strings.Join(live, ", ")+"):\n"+d)
		}
	}
	return strings.Join(left, "\n")
}

// scale sets a StatefulSet's or Deployment's replicas.
func (lc *lifecycle) scale(obj client.Object, replicas int32) {
	lc.t.Helper()
	patch := client.RawPatch("application/merge-patch+json", []byte(fmt.Sprintf(`{"spec":{"replicas":%d}}`, replicas)))
	if err := e2e.Suite.Client.Patch(e2e.Ctx(lc.t), obj, patch); err != nil {
		lc.t.Fatalf("scaling %s to %d: %v", obj.GetName(), replicas, err)
	}
}

// rollingRestart does what `kubectl rollout restart` does: a new template annotation.
func (lc *lifecycle) rollingRestart(obj client.Object) {
	lc.t.Helper()
	patch := client.RawPatch("application/merge-patch+json", []byte(fmt.Sprintf(
		`{"spec":{"template":{"metadata":{"annotations":{"kubectl.kubernetes.io/restartedAt":%q}}}}}`, time.Now().Format(time.RFC3339Nano))))
	if err := e2e.Suite.Client.Patch(e2e.Ctx(lc.t), obj, patch); err != nil {
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

// readyPods returns the pods of app that are Ready and not being deleted.
func (lc *lifecycle) readyPods(app string) []corev1.Pod {
	lc.t.Helper()
	var out []corev1.Pod
	for _, p := range lc.pods(app) {
		if p.DeletionTimestamp == nil && harness.PodReady(&p) {
			out = append(out, p)
		}
	}
	return out
}

// sandboxFailedWith reports whether a pod of app has a FailedCreatePodSandBox event whose
// message says every one of words; else the last such message seen.
func (lc *lifecycle) sandboxFailedWith(app string, words ...string) (bool, string) {
	lc.t.Helper()
	n, last := lc.sandboxFailures(app, words...)
	return n > 0, last
}

// sandboxFailures counts the FailedCreatePodSandBox events (each names its own sandbox)
// on pods of app whose message says every one of words, and returns the last such
// message seen of any.
func (lc *lifecycle) sandboxFailures(app string, words ...string) (int, string) {
	lc.t.Helper()
	uids := map[string]bool{}
	for _, p := range lc.pods(app) {
		uids[string(p.UID)] = true
	}
	var events corev1.EventList
	if err := e2e.Suite.Client.List(e2e.Ctx(lc.t), &events, client.InNamespace(lc.ns)); err != nil {
		lc.t.Fatal(err)
	}
	n, last := 0, "no FailedCreatePodSandBox event on a pod of "+app
	for _, e := range events.Items {
		if e.Reason != "FailedCreatePodSandBox" || !uids[string(e.InvolvedObject.UID)] {
			continue
		}
		last = e.Message
		if containsAll(e.Message, words...) {
			n++
		}
	}
	return n, last
}

// deleteAll deletes the workloads (their pods go the way the garbage collector and the
// kubelets let them go).
func (lc *lifecycle) deleteAll(objs ...client.Object) {
	lc.t.Helper()
	for _, obj := range objs {
		if err := e2e.Suite.Client.Delete(e2e.Ctx(lc.t), obj); err != nil && !e2e.IsNotFound(err) {
			lc.t.Fatalf("deleting %s: %v", obj.GetName(), err)
		}
	}
}

func containsAll(s string, words ...string) bool {
	for _, w := range words {
		if !strings.Contains(s, w) {
			return false
		}
	}
	return true
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func mapString(m map[string]string) string {
	s := ""
	for k, v := range m {
		s += k + "=" + v + " "
	}
	return s
}

func values(m map[string]string) []string {
	var out []string
	for _, v := range m {
		out = append(out, v)
	}
	return out
}

func onlyPod(t *testing.T, pods map[string]corev1.Pod) corev1.Pod {
	t.Helper()
	if len(pods) != 1 {
		t.Fatalf("want one pod, have %v", keys(pods))
	}
	for _, p := range pods {
		return p
	}
	panic("unreachable")
}

// requireOnly checks that the pod's Endpoint has exactly one attachment, net1 of sandbox
// sb, holding addr, and that the sandbox has addr on net1.
func (lc *lifecycle) requireOnly(pod string, sb kubelet.Sandbox, addr, when string) {
	lc.t.Helper()
	ep := &v1.Endpoint{}
	if err := e2e.Suite.Client.Get(e2e.Ctx(lc.t), client.ObjectKey{Namespace: lc.ns, Name: pod}, ep); err != nil {
		lc.t.Fatalf("%s: %s's Endpoint: %v", when, pod, err)
	}
	if len(ep.Status.Interfaces) != 1 || !e2e.Holds(ep, sb.ContainerID, addr) {
		lc.t.Fatalf("%s: %s's Endpoint has %+v, want one attachment of sandbox %.12s holding %s", when, pod, ep.Status.Interfaces, sb.ContainerID, addr)
	}
	if got := harness.GlobalAddrs(sb.NetNS.Path(), "net1"); len(got) != 1 || got[0] != addr {
		lc.t.Fatalf("%s: %s's sandbox %.12s has %v on net1, want %s", when, pod, sb.ContainerID, got, addr)
	}
}

// sandboxesSharing is a probe for e2e.WatchInvariants: no address on net1 of two live
// sandboxes of the namespace on the lifecycle's nodes.
func (lc *lifecycle) sandboxesSharing(context.Context) []string {
	var problems []string
	inSandbox := map[string]string{}
	for _, node := range lc.nodes {
		for _, sb := range node.kubelet.Sandboxes() {
			if sb.PodNamespace != lc.ns {
				continue
			}
			who := fmt.Sprintf("%s on %s (sandbox %.12s)", sb.PodName, node.name, sb.ContainerID)
			for _, a := range harness.GlobalAddrs(sb.NetNS.Path(), "net1") {
				if prev, dup := inSandbox[a]; dup {
					problems = append(problems, fmt.Sprintf("%s on net1 of two sandboxes: %s and %s", a, prev, who))
				}
				inSandbox[a] = who
			}
		}
	}
	return problems
}
