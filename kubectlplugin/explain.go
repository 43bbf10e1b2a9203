package kubectlplugin

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/core/apppool"
	"github.com/underpool/underpool/core/selection"
)

// Explanation is the output of `explain pod`.
type Explanation struct {
	Pod        string                 `json:"pod"`
	UID        string                 `json:"uid"`
	Phase      string                 `json:"phase"`
	Node       string                 `json:"node"`
	Notes      []string               `json:"notes,omitempty"`
	Interfaces []InterfaceExplanation `json:"interfaces"`
	// LastSandboxFailure is the pod's last FailedCreatePodSandBox event, if any.
	LastSandboxFailure *PodEvent `json:"lastSandboxFailure,omitempty"`
}

// PodEvent is one event about the pod.
type PodEvent struct {
	Reason  string    `json:"reason"`
	Message string    `json:"message"`
	Count   int32     `json:"count"`
	Last    time.Time `json:"last"`
}

// InterfaceExplanation is the selection chain for one interface and what it holds.
type InterfaceExplanation struct {
	Interface string `json:"interface"`
	NAD       string `json:"nad,omitempty"`
	Network   string `json:"network,omitempty"`
	// Chain is every selection rule in ipamd's order and what it found.
	Chain []RuleStep `json:"chain"`
	// Rule is the rule that chose the candidate pools; Error why selection failed.
	Rule     string       `json:"rule,omitempty"`
	Error    string       `json:"error,omitempty"`
	Families []FamilyWalk `json:"families"`
	Holds    []Held       `json:"holds"`
	// Outcome sums it up: what the interface holds, or why it has no address.
	Outcome string `json:"outcome"`
}

// RuleStep is one selection rule: Verdict is chosen, not set, or not reached.
type RuleStep struct {
	Rule    string `json:"rule"`
	Verdict string `json:"verdict"`
	Detail  string `json:"detail,omitempty"`
}

// FamilyWalk is the candidate pools of one family, in order, each judged.
type FamilyWalk struct {
	Family    string     `json:"family"`
	Requested string     `json:"requested,omitempty"` // multus "ips"
	Pools     []PoolStep `json:"pools"`
	Chosen    string     `json:"chosen,omitempty"`
}

// PoolStep is one candidate pool: Verdict is "would allocate", "skipped" or "not reached".
type PoolStep struct {
	Pool    string `json:"pool"`
	Verdict string `json:"verdict"`
	Reason  string `json:"reason,omitempty"`
	Free    uint64 `json:"free"`
}

// Held is one attachment the pod's Endpoint records on the interface.
type Held struct {
	ContainerID string          `json:"containerID"`
	Network     string          `json:"network,omitempty"`
	IPs         []v1.EndpointIP `json:"ips"`
	Node        string          `json:"node"`
	Created     time.Time       `json:"created"`
	Detached    *time.Time      `json:"detached,omitempty"`
	// ThisPod is false when the attachment was made for an earlier pod of that name.
	ThisPod bool `json:"thisPod"`
}

const (
	verdictChosen     = "chosen"
	verdictNotSet     = "not set"
	verdictNotReached = "not reached"
	poolWins          = "would allocate"
	poolSkipped       = "skipped"
)

func newExplainCommand(o *Options) *cobra.Command {
	var ifName string
	cmd := &cobra.Command{
		Use:   "explain pod NAMESPACE/NAME",
		Short: "Why a pod got its address, or none: the pool selection chain as ipamd would walk it now",
		Long: `Walks the pool selection chain as ipamd would now, for each underpool interface of the pod
(from its k8s.v1.cni.cncf.io/networks annotation, or --interface): which rule chose the
candidate pools (pod annotation > pod subnet annotation > namespace default > the
network's own ipam pools > cluster default pools), each pool in order and why it is skipped
(affinity, exhausted, being deleted, family, quarantined addresses), what the pod holds
(from its Endpoint), on which node; for an interface without an address, the reason,
with the pod's last FailedCreatePodSandBox event.`,
		Example: "  kubectl underpool explain pod default/web-0\n  kubectl underpool explain pod web-0 -n default --interface net1 -o yaml",
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) != 2 || args[0] != "pod" {
				return fmt.Errorf("usage: kubectl underpool explain pod NAMESPACE/NAME [--interface net1] (got %q)", strings.Join(args, " "))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := o.checkOutput(); err != nil {
				return err
			}
			ns, name, err := o.splitName(args[1])
			if err != nil {
				return err
			}
			c, err := o.Client()
			if err != nil {
				return err
			}
			ex, err := Explain(cmd.Context(), c, ns, name, ifName, time.Now())
			if err != nil {
				return err
			}
			return o.print(ex, func(w io.Writer) { explainTable(w, ex, time.Now()) })
		},
	}
	cmd.Flags().StringVar(&ifName, "interface", "", "explain only this pod interface, e.g. net1")
	return cmd
}

// Explain walks pool selection for the pod's interfaces as ipamd would now.
func Explain(ctx context.Context, c client.Reader, ns, name, ifName string, now time.Time) (*Explanation, error) {
	pod := &corev1.Pod{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, pod); apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("pod %s/%s not found: check the namespace (-n or NAMESPACE/NAME) and the name (kubectl get pods -n %s)", ns, name, ns)
	} else if err != nil {
		return nil, fmt.Errorf("reading pod %s/%s: %w", ns, name, err)
	}
	ex := &Explanation{Pod: ns + "/" + name, UID: string(pod.UID), Phase: string(pod.Status.Phase), Node: pod.Spec.NodeName}
	in := &selection.Input{Pod: pod}
	if err := fillInput(ctx, c, pod, in, ex); err != nil {
		return nil, err
	}
	pools, err := loadPools(ctx, c, now)
	if err != nil {
		return nil, err
	}
	in.Pools = pools.list
	ep := &v1.Endpoint{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, ep); apierrors.IsNotFound(err) {
		ep = nil
	} else if err != nil {
		return nil, fmt.Errorf("reading Endpoint %s/%s: %w", ns, name, err)
	}
	atts, err := podAttachments(ctx, c, pod)
	if err != nil {
		return nil, err
	}
	atts = withRecorded(atts, ep, ifName)
	if len(atts) == 0 {
		ex.Notes = append(ex.Notes, "the pod names no network in k8s.v1.cni.cncf.io/networks and holds no address: explaining eth0, as for underpool as the cluster's default network; pass --interface for another")
		atts = []attachment{{ifName: "eth0", underpool: true}}
	}
	for i := range atts {
		ex.Interfaces = append(ex.Interfaces, explainInterface(in, &atts[i], pools, ep, pod))
	}
	if ex.LastSandboxFailure, err = lastSandboxFailure(ctx, c, pod); err != nil {
		return nil, err
	}
	return ex, nil
}

// fillInput reads the namespace and node, and parses the annotations, as ipamd does.
func fillInput(ctx context.Context, c client.Reader, pod *corev1.Pod, in *selection.Input, ex *Explanation) error {
	var err error
	if in.PodAnnotations, err = v1.ParsePodAnnotations(pod.Annotations); err != nil {
		return fmt.Errorf("pod %s/%s: %v (ipamd refuses every ADD for this pod until the annotation is fixed)", pod.Namespace, pod.Name, err)
	}
	if in.WorkloadAbove, err = workloadAbove(ctx, c, pod, in.PodAnnotations); err != nil {
		return err
	}
	nsObj := &corev1.Namespace{}
	if err := c.Get(ctx, client.ObjectKey{Name: pod.Namespace}, nsObj); err != nil {
		return fmt.Errorf("reading namespace %s: %w", pod.Namespace, err)
	}
	in.Namespace = nsObj
	in.NamespaceAnnotations, in.NamespaceAnnotationsErr = v1.ParseNamespaceAnnotations(nsObj.Annotations)
	if pod.Spec.NodeName == "" {
		ex.Notes = append(ex.Notes, "the pod is not scheduled yet: no ipamd has been asked; pools with a nodeAffinity cannot be judged")
		return nil
	}
	node := &corev1.Node{}
	if err := c.Get(ctx, client.ObjectKey{Name: pod.Spec.NodeName}, node); apierrors.IsNotFound(err) {
		ex.Notes = append(ex.Notes, "node "+pod.Spec.NodeName+" has no Node object: pools with a nodeAffinity cannot match")
	} else if err != nil {
		return fmt.Errorf("reading node %s: %w", pod.Spec.NodeName, err)
	} else {
		in.Node = node
	}
	return nil
}

// withRecorded adds the interfaces the Endpoint records but the annotation does not name
// (eth0 when underpool is the default network), then keeps only ifName when given.
func withRecorded(atts []attachment, ep *v1.Endpoint, ifName string) []attachment {
	seen := map[string]bool{}
	for _, a := range atts {
		seen[a.ifName] = true
	}
	if ep != nil {
		for _, itf := range ep.Status.Interfaces {
			if !seen[itf.Interface] {
				seen[itf.Interface] = true
				atts = append(atts, attachment{ifName: itf.Interface, network: itf.Network, underpool: true})
			}
		}
	}
	if ifName == "" {
		return atts
	}
	for _, a := range atts {
		if a.ifName == ifName {
			return []attachment{a}
		}
	}
	return []attachment{{ifName: ifName, underpool: true}}
}

func explainInterface(base *selection.Input, a *attachment, pools *clusterPools, ep *v1.Endpoint, pod *corev1.Pod) InterfaceExplanation {
	x := InterfaceExplanation{Interface: a.ifName, NAD: a.nad, Network: a.network, Chain: []RuleStep{}, Families: []FamilyWalk{}, Holds: []Held{}}
	x.Holds = heldOn(ep, a.ifName, pod)
	if !a.underpool || a.problem != "" {
		x.Error = a.problem
		x.Outcome = outcome(&x, pod)
		return x
	}
	in := *base
	in.IfName, in.Network, in.NAD = a.ifName, a.network, a.pools
	candidates, source, err := selection.Candidates(&in)
	x.Rule = string(source)
	if err != nil {
		x.Error = err.Error()
	}
	x.Chain = chain(&in, source, err)
	if err != nil { // ipamd refuses the request before it tries any pool
		x.Outcome = outcome(&x, pod)
		return x
	}
	for _, fam := range []struct {
		label string
		names []string
		v6    bool
	}{{"IPv4", candidates.IPv4, false}, {"IPv6", candidates.IPv6, true}} {
		if len(fam.names) == 0 {
			continue
		}
		want := requestedFor(a.requested, fam.v6)
		x.Families = append(x.Families, walk(&in, source, fam.label, fam.names, want, pools))
	}
	x.Outcome = outcome(&x, pod)
	return x
}

// walk judges the candidate pools in order as ipamd's allocateFrom tries them.
func walk(in *selection.Input, source selection.Source, family string, names []string, want netip.Addr, pools *clusterPools) FamilyWalk {
	w := FamilyWalk{Family: family, Pools: []PoolStep{}}
	if want.IsValid() {
		w.Requested = want.String()
	}
	for _, name := range names {
		step := PoolStep{Pool: name}
		p := pools.byName[name]
		if p != nil {
			step.Free = p.Free
		}
		switch {
		case w.Chosen != "":
			step.Verdict = verdictNotReached
		case p == nil && source == selection.SourceAppPool:
			step.Verdict, step.Reason = poolSkipped, "application pool not created yet: the controller carves it from the Subnet; ipamd answers try-again-later meanwhile"
		case p == nil:
			step.Verdict, step.Reason = poolSkipped, "no such IPPool: create it or fix the name in the "+string(source)
		default:
			step.Verdict, step.Reason = judgePool(p, in, want)
		}
		if step.Verdict == poolWins {
			w.Chosen = name
		}
		w.Pools = append(w.Pools, step)
	}
	return w
}

// judgePool says whether ipamd would allocate from p now, and if not why: affinity,
// deletion, an unusable spec or allocation state, or no free address (with what holds them).
func judgePool(p *Capacity, in *selection.Input, want netip.Addr) (string, string) {
	if ok, why := selection.Eligible(p.pool, in); !ok {
		return poolSkipped, why
	}
	switch {
	case p.Deleting:
		return poolSkipped, "being deleted: hands out nothing more"
	case p.Problem != "":
		return poolSkipped, p.Problem
	case want.IsValid():
		o, ok := p.view.Offset(want)
		if !ok {
			return poolSkipped, fmt.Sprintf("requested %s is outside its subnet %s", want, p.view.Prefix)
		}
		if !p.free.Contains(o) {
			return poolSkipped, fmt.Sprintf("requested %s is not free here (allocated, quarantined, reserved, shared or not in spec.ips)", want)
		}
		return poolWins, ""
	case p.Free == 0:
		why := fmt.Sprintf("exhausted: %d usable, %d allocated", p.Total, p.Allocated)
		if p.Quarantined > 0 {
			why += fmt.Sprintf(", %d quarantined (found in use on the wire)", p.Quarantined)
		}
		if p.Reserved > 0 {
			why += fmt.Sprintf(", %d reserved", p.Reserved)
		}
		if p.Shared > 0 {
			why += fmt.Sprintf(", %d shared with another pool", p.Shared)
		}
		return poolSkipped, why
	}
	return poolWins, ""
}

func requestedFor(addrs []netip.Addr, v6 bool) netip.Addr {
	for _, a := range addrs {
		if a.Is6() == v6 {
			return a
		}
	}
	return netip.Addr{}
}

// chain lists every selection rule in ipamd's order, marking the one that chose.
func chain(in *selection.Input, source selection.Source, err error) []RuleStep {
	steps := []RuleStep{
		{Rule: string(selection.SourcePodAnnotation)},
		{Rule: string(selection.SourceAppPool)},
		{Rule: string(selection.SourceNamespace)},
		{Rule: string(selection.SourceNetwork)},
		{Rule: string(selection.SourceClusterDefault)},
	}
	if f, key := in.PodAnnotations.PoolsFor(in.IfName); !f.Empty() {
		steps[0].Detail = key + " " + families(f)
	}
	if s, ok := in.PodAnnotations.Subnets.For(in.IfName); ok {
		steps[1].Detail = "Subnets " + families(v1.PoolNames(s))
	}
	switch {
	case in.NamespaceAnnotationsErr != nil:
		steps[2].Detail = in.NamespaceAnnotationsErr.Error()
	case !in.NamespaceAnnotations.DefaultPools.Empty():
		steps[2].Detail = families(in.NamespaceAnnotations.DefaultPools)
	}
	if !in.NAD.Empty() {
		steps[3].Detail = "ipam " + families(in.NAD)
	}
	var defaults []string
	for _, p := range in.Pools {
		if p.Spec.Default {
			defaults = append(defaults, p.Name)
		}
	}
	sort.Strings(defaults)
	if len(defaults) > 0 {
		steps[4].Detail = "spec.default pools " + strings.Join(defaults, ", ")
	}
	decided := false
	for i := range steps {
		switch {
		case decided:
			steps[i].Verdict = verdictNotReached
		case steps[i].Rule == string(source) || (source == "" && err != nil && steps[i].Detail != ""):
			steps[i].Verdict, decided = verdictChosen, true
		default:
			steps[i].Verdict = verdictNotSet
		}
	}
	return steps
}

func families(f v1.PoolNames) string {
	var parts []string
	if len(f.IPv4) > 0 {
		parts = append(parts, "ipv4 ["+strings.Join(f.IPv4, ", ")+"]")
	}
	if len(f.IPv6) > 0 {
		parts = append(parts, "ipv6 ["+strings.Join(f.IPv6, ", ")+"]")
	}
	return strings.Join(parts, " ")
}

func heldOn(ep *v1.Endpoint, ifName string, pod *corev1.Pod) []Held {
	out := []Held{}
	if ep == nil {
		return out
	}
	for _, itf := range ep.Status.Interfaces {
		if itf.Interface != ifName {
			continue
		}
		h := Held{ContainerID: itf.ContainerID, Network: itf.Network, IPs: itf.IPs, Node: ep.Status.Node, Created: itf.Created.Time}
		h.ThisPod = uidOf(&itf, ep) == "" || uidOf(&itf, ep) == string(pod.UID)
		if itf.Detached != nil {
			t := itf.Detached.Time
			h.Detached = &t
		}
		out = append(out, h)
	}
	return out
}

// workloadAbove reads the controller of the pod's ReplicaSet or Job, as ipamd does for a
// pod that asks for an application pool: a CronJob's pod names only its Job.
func workloadAbove(ctx context.Context, c client.Reader, pod *corev1.Pod, a v1.PodAnnotations) (*metav1.OwnerReference, error) {
	kind, name, ok := apppool.Intermediate(pod)
	if a.Subnets == nil || !ok {
		return nil, nil
	}
	meta := &metav1.PartialObjectMetadata{}
	gv := "apps/v1"
	if kind == apppool.KindJob {
		gv = "batch/v1"
	}
	meta.SetGroupVersionKind(schema.FromAPIVersionAndKind(gv, kind))
	if err := c.Get(ctx, client.ObjectKey{Namespace: pod.Namespace, Name: name}, meta); apierrors.IsNotFound(err) {
		return nil, nil
	} else if err != nil {
		return nil, fmt.Errorf("reading %s %s/%s, whose controller owns the pod's application pool: %w", kind, pod.Namespace, name, err)
	}
	return metav1.GetControllerOf(meta), nil
}
