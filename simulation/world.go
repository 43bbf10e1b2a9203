package simulation

import (
	"context"
	"fmt"
	"sort"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/underpool/underpool/api/v1"
)

// The world is what the kubelets, the runtime and the cluster's own controllers do: pods
// come and go (same names, new UIDs), sandboxes are made and torn down, ADDs and DELs
// reach ipamd late, twice or never, nodes and pools are deleted and made again. It also
// knows which address each live sandbox uses: that is what "nothing freed that a live pod
// holds" is checked against.

const (
	namespace = "ns"
	network   = "under"
	ifName    = "net1"
	stsName   = "db"
)

var (
	nodeNames = []string{"node-a", "node-b", "node-c"}
	// small pools, so that freed addresses are handed out again soon: a free that lands
	// where it must not is then caught holding someone else's address
	poolSpecs = map[string]v1.IPPoolSpec{
		"p1": {Subnet: "10.250.1.0/24", IPs: []string{"10.250.1.10-10.250.1.13"}},
		"p2": {Subnet: "10.250.2.0/24", IPs: []string{"10.250.2.10-10.250.2.12"}},
	}
	poolNames = []string{"p1", "p2"}
	podNames  = []string{"w0", "w1", "w2", "w3", stsName + "-0", stsName + "-1"}
	poolLists = [][]string{{"p1"}, {"p2"}, {"p1", "p2"}, {"p2", "p1"}}
)

// pod is one incarnation of a pod (a name and a UID).
type pod struct {
	name, uid, node string
	sts             bool
	pools           []string
	exists          bool // its object is in the API
	terminating     bool
	sandboxes       []*sandbox
}

// sandbox is one pod sandbox as the runtime knows it.
type sandbox struct {
	id   string
	pod  *pod
	adds int // ADDs sent for it
	// running: an ADD answered in time and no DEL was sent since: the pod uses addr
	running bool
	addr    string
	wantDel bool // the runtime will send DEL (again)
	gone    bool // the runtime forgot it (a DEL succeeded, or it was lost with its node's state)
	// an ADD (sent at addSent) or a DEL for it is in flight
	addBusy, delBusy bool
	addSent          time.Time
	// abandoned: the plugin stopped waiting for the ADD in flight (ipam.timeout); the
	// runtime tears the sandbox down and makes another, while ipamd works on
	abandoned bool
}

type world struct {
	pods      []*pod // every incarnation, in creation order
	uids      int
	sandboxes int
	replicas  int32
}

func (w *world) current(name string) *pod {
	for i := len(w.pods) - 1; i >= 0; i-- {
		if w.pods[i].name == name {
			return w.pods[i]
		}
	}
	return nil
}

func (w *world) newSandbox(p *pod) *sandbox {
	w.sandboxes++
	sb := &sandbox{id: fmt.Sprintf("c%03d", w.sandboxes), pod: p}
	p.sandboxes = append(p.sandboxes, sb)
	return sb
}

// latest is the pod's newest sandbox: the kubelet runs one per pod, and makes another
// only once the last is stopped.
func (p *pod) latest() *sandbox {
	if len(p.sandboxes) == 0 {
		return nil
	}
	return p.sandboxes[len(p.sandboxes)-1]
}

func (w *world) allSandboxes() []*sandbox {
	var out []*sandbox
	for _, p := range w.pods {
		out = append(out, p.sandboxes...)
	}
	return out
}

// ordinalWanted mirrors the StatefulSet controller: it makes db-N while N < replicas.
func (w *world) ordinalWanted(name string) bool {
	return name == stsName+"-0" || (name == stsName+"-1" && w.replicas >= 2)
}

// initial objects: the namespace, the nodes, the pools (protected, as the controller
// left them) and the StatefulSet.
func initialObjects() []client.Object {
	objs := []client.Object{&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}}
	for _, n := range nodeNames {
		objs = append(objs, nodeObj(n))
	}
	for _, name := range poolNames {
		p := poolObj(name, 1)
		p.Finalizers = []string{v1.PoolProtection}
		objs = append(objs, p)
	}
	objs = append(objs, &appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: stsName, UID: "sts-db"},
		Spec: appsv1.StatefulSetSpec{Replicas: ptr.To(int32(2))}})
	return objs
}

func nodeObj(name string) *corev1.Node {
	return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, UID: types.UID("uid-" + name)}}
}

func poolObj(name string, incarnation int) *v1.IPPool {
	spec := poolSpecs[name]
	return &v1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: name, UID: types.UID(fmt.Sprintf("uid-%s-%d", name, incarnation))},
		Spec: *spec.DeepCopy()}
}

// createPod makes a new incarnation of name on node.
func (s *sim) createPod(name, node string, pools []string) string {
	w := s.world
	w.uids++
	p := &pod{name: name, uid: fmt.Sprintf("%s-u%d", name, w.uids), node: node, pools: pools, exists: true,
		sts: name == stsName+"-0" || name == stsName+"-1"}
	obj := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name, UID: types.UID(p.uid)},
		Spec: corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "c", Image: "pause"}}}}
	if p.sts {
		obj.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "StatefulSet", Name: stsName,
			UID: "sts-db", Controller: ptr.To(true)}}
	}
	if err := s.api.Create(context.Background(), obj); err != nil {
		return "refused: " + err.Error()
	}
	w.pods = append(w.pods, p)
	sb := w.newSandbox(p)
	return fmt.Sprintf("uid %s on %s, pools %v, sandbox %s", p.uid, node, pools, sb.id)
}

// removePod deletes the pod object at once: the kubelet's last step after DEL, or a
// force delete before it. Sandboxes still known to the runtime get their DEL later.
func (s *sim) removePod(p *pod) string {
	obj := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: p.name}}
	if err := s.api.Delete(context.Background(), obj, client.GracePeriodSeconds(0)); err != nil {
		return "failed: " + err.Error()
	}
	p.exists = false
	for _, sb := range p.sandboxes {
		if !sb.gone {
			sb.wantDel = true
		}
	}
	return "gone"
}

// terminate starts a graceful deletion: the kubelet sends DEL for every sandbox; the
// object goes later (removePod).
func (s *sim) terminate(p *pod) string {
	p.terminating = true
	n := 0
	for _, sb := range p.sandboxes {
		if !sb.gone {
			sb.wantDel = true
			n++
		}
	}
	return fmt.Sprintf("%d sandboxes to DEL", n)
}

// replaceSandbox kills the pod's sandbox; the kubelet makes a new one. The old one's DEL
// is sent, or lost with the runtime's state.
func (s *sim) replaceSandbox(p *pod, lost bool) string {
	old := p.latest()
	old.running = false
	what := "DEL to follow"
	if lost {
		old.gone, old.wantDel = true, false
		what = "DEL lost"
	} else {
		old.wantDel = true
	}
	sb := s.world.newSandbox(p)
	return fmt.Sprintf("%s dies (%s), new sandbox %s", old.id, what, sb.id)
}

func (s *sim) scaleStatefulSet(replicas int32) string {
	sts := &appsv1.StatefulSet{}
	if err := s.api.Get(context.Background(), client.ObjectKey{Namespace: namespace, Name: stsName}, sts); err != nil {
		return "failed: " + err.Error()
	}
	sts.Spec.Replicas = ptr.To(replicas)
	if err := s.api.Update(context.Background(), sts); err != nil {
		return "failed: " + err.Error()
	}
	s.world.replicas = replicas
	out := fmt.Sprintf("replicas %d", replicas)
	if p := s.world.current(stsName + "-1"); replicas < 2 && p != nil && p.exists && !p.terminating {
		out += ", " + p.name + " terminating: " + s.terminate(p)
	}
	return out
}

// validFor is the runtime's list of attachments on node, for CNI GC: every sandbox it
// still has (an ADD in flight included).
func (s *sim) validFor(node string) []string {
	var ids []string
	for _, sb := range s.world.allSandboxes() {
		if sb.pod.node == node && !sb.gone {
			ids = append(ids, sb.id)
		}
	}
	sort.Strings(ids)
	return ids
}

// pluginTimeout is how long the plugin waits for ipamd (ipam.timeout): an ADD answered
// later failed, as far as the runtime knows, and it sends DEL for that sandbox.
const pluginTimeout = 30 * time.Second
