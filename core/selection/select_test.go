package selection

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/core/apppool"
)

func pod(annotations, labels map[string]string) *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns", Annotations: annotations, Labels: labels}}
}

// parsed fills in the annotations the way ipamd does once per request.
func parsed(t *testing.T, in Input) *Input {
	t.Helper()
	if in.Pod != nil {
		a, err := v1.ParsePodAnnotations(in.Pod.Annotations)
		if err != nil {
			t.Fatal(err)
		}
		in.PodAnnotations = a
	}
	if in.Namespace != nil {
		in.NamespaceAnnotations, in.NamespaceAnnotationsErr = v1.ParseNamespaceAnnotations(in.Namespace.Annotations)
	}
	return &in
}

func ns(annotations, labels map[string]string) *corev1.Namespace {
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "ns", Annotations: annotations, Labels: labels}}
}

func TestCandidatesPriority(t *testing.T) {
	defaults := []v1.IPPool{
		{ObjectMeta: metav1.ObjectMeta{Name: "def-b"}, Spec: v1.IPPoolSpec{Subnet: "10.250.2.0/24", Default: true}},
		{ObjectMeta: metav1.ObjectMeta{Name: "def-a"}, Spec: v1.IPPoolSpec{Subnet: "10.250.1.0/24", Default: true}},
		{ObjectMeta: metav1.ObjectMeta{Name: "def-6"}, Spec: v1.IPPoolSpec{Subnet: "fd00:250::/64", Default: true}},
		{ObjectMeta: metav1.ObjectMeta{Name: "other"}, Spec: v1.IPPoolSpec{Subnet: "10.250.3.0/24"}},
	}
	nsDefault := ns(map[string]string{v1.AnnotationNSDefaultIPv4: `["ns-a","ns-b"]`}, nil)
	cases := []struct {
		name   string
		in     Input
		source Source
		v4, v6 string
	}{
		{"pod annotation wins", Input{Pod: pod(map[string]string{v1.AnnotationIPPool: `{"ipv4":["p1","p2"],"ipv6":["p6"]}`}, nil), Namespace: nsDefault, NAD: Families{IPv4: []string{"nad"}}},
			SourcePodAnnotation, "p1,p2", "p6"},
		{"per-interface annotation beats the single one", Input{IfName: "net2", Pod: pod(map[string]string{
			v1.AnnotationIPPools: `[{"interface":"net1","ipv4":["a"]},{"interface":"net2","ipv4":["b"]}]`, v1.AnnotationIPPool: `{"ipv4":["c"]}`}, nil)},
			SourcePodAnnotation, "b", ""},
		{"interface not in ippools falls back to ippool", Input{IfName: "net3", Pod: pod(map[string]string{
			v1.AnnotationIPPools: `[{"interface":"net1","ipv4":["a"]}]`, v1.AnnotationIPPool: `{"ipv4":["c"]}`}, nil)},
			SourcePodAnnotation, "c", ""},
		{"namespace default next", Input{Pod: pod(nil, nil), Namespace: nsDefault, NAD: Families{IPv4: []string{"nad"}}}, SourceNamespace, "ns-a,ns-b", ""},
		{"comma list in namespace", Input{Namespace: ns(map[string]string{v1.AnnotationNSDefaultIPv6: "x6, y6"}, nil)}, SourceNamespace, "", "x6,y6"},
		{"network pools next", Input{Pod: pod(nil, nil), Namespace: ns(nil, nil), NAD: Families{IPv4: []string{"nad"}}, Pools: defaults}, SourceNetwork, "nad", ""},
		{"cluster defaults last, sorted", Input{Pools: defaults}, SourceClusterDefault, "def-a,def-b", "def-6"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f, src, err := Candidates(parsed(t, c.in))
			if err != nil {
				t.Fatal(err)
			}
			if src != c.source || strings.Join(f.IPv4, ",") != c.v4 || strings.Join(f.IPv6, ",") != c.v6 {
				t.Fatalf("got %s %v %v, want %s %s %s", src, f.IPv4, f.IPv6, c.source, c.v4, c.v6)
			}
		})
	}
	if _, _, err := Candidates(&Input{IfName: "net1"}); err == nil || !strings.Contains(err.Error(), "spec.default") {
		t.Fatalf("no source at all: want an error listing the sources, got %v", err)
	}
}

// A namespace whose default annotation is malformed fails only the pods that fall back
// to it, naming the namespace and the annotation.
func TestBadNamespaceDefaultFailsOnlyItsUsers(t *testing.T) {
	bad := ns(map[string]string{v1.AnnotationNSDefaultIPv4: `["a",`}, nil)
	_, _, err := Candidates(parsed(t, Input{Pod: pod(nil, nil), Namespace: bad}))
	if err == nil || !strings.Contains(err.Error(), v1.AnnotationNSDefaultIPv4) || !strings.Contains(err.Error(), "namespace ns") {
		t.Errorf("namespace annotation error %v", err)
	}
	in := parsed(t, Input{Pod: pod(map[string]string{v1.AnnotationIPPool: `{"ipv4":["p1"]}`}, nil), Namespace: bad})
	if f, src, err := Candidates(in); err != nil || src != SourcePodAnnotation || f.IPv4[0] != "p1" {
		t.Errorf("a pod naming its pools: %v %s %v", f, src, err)
	}
}

func TestEligibleAffinities(t *testing.T) {
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1", Labels: map[string]string{"zone": "a"}}}
	in := &Input{Node: node, Namespace: ns(nil, map[string]string{"team": "storage"}), Pod: pod(nil, map[string]string{"app": "db"}), Network: "underlay"}
	sel := func(k, v string) *metav1.LabelSelector {
		return &metav1.LabelSelector{MatchLabels: map[string]string{k: v}}
	}
	cases := []struct {
		spec v1.IPPoolSpec
		ok   bool
		why  string
	}{
		{v1.IPPoolSpec{}, true, ""},
		{v1.IPPoolSpec{NodeAffinity: sel("zone", "a"), NamespaceAffinity: sel("team", "storage"), PodAffinity: sel("app", "db"), MultusNames: []string{"ns/underlay"}}, true, ""},
		{v1.IPPoolSpec{NodeAffinity: sel("zone", "b")}, false, "nodeAffinity"},
		{v1.IPPoolSpec{NamespaceAffinity: sel("team", "web")}, false, "namespaceAffinity"},
		{v1.IPPoolSpec{PodAffinity: sel("app", "web")}, false, "podAffinity"},
		{v1.IPPoolSpec{MultusNames: []string{"other"}}, false, "multusNames"},
	}
	for _, c := range cases {
		ok, why := Eligible(&v1.IPPool{Spec: c.spec}, in)
		if ok != c.ok || !strings.Contains(why, c.why) {
			t.Errorf("Eligible(%+v) = %v %q, want %v naming %q", c.spec, ok, why, c.ok, c.why)
		}
	}
}

// Finding 6: a pool listed under the other family would give one interface two addresses
// of one family. Every source is refused, naming the field and the fix.
func TestCandidatesRefuseAPoolOfTheOtherFamily(t *testing.T) {
	pools := []v1.IPPool{
		{ObjectMeta: metav1.ObjectMeta{Name: "v4"}, Spec: v1.IPPoolSpec{Subnet: "10.250.1.0/24"}},
		{ObjectMeta: metav1.ObjectMeta{Name: "v4b"}, Spec: v1.IPPoolSpec{Subnet: "10.250.2.0/24"}},
		{ObjectMeta: metav1.ObjectMeta{Name: "v6"}, Spec: v1.IPPoolSpec{Subnet: "fd00:250::/64"}},
	}
	cases := []struct {
		name  string
		in    Input
		wants []string
	}{
		{"pod annotation ippool", Input{IfName: "net1", Pod: pod(map[string]string{v1.AnnotationIPPool: `{"ipv4":["v4"],"ipv6":["v4b"]}`}, nil)},
			[]string{v1.AnnotationIPPool, `"ipv6" list`, "IPPool v4b", "is IPv4, not IPv6", `move it to the annotation ` + v1.AnnotationIPPool + ` "ipv4" list`}},
		{"pod annotation ippools", Input{IfName: "net1", Pod: pod(map[string]string{v1.AnnotationIPPools: `[{"interface":"net1","ipv4":["v6"]}]`}, nil)},
			[]string{v1.AnnotationIPPools, `"ipv4" list`, "IPPool v6", "is IPv6, not IPv4", `"ipv6" list`}},
		{"namespace default", Input{IfName: "net1", Namespace: ns(map[string]string{v1.AnnotationNSDefaultIPv6: "v6,v4"}, nil)},
			[]string{"namespace ns annotation " + v1.AnnotationNSDefaultIPv6, "IPPool v4", "move it to the namespace ns annotation " + v1.AnnotationNSDefaultIPv4}},
		{"network ipam.ipv6Pools", Input{IfName: "net1", Network: "underlay", NAD: Families{IPv6: []string{"v4"}}},
			[]string{`network "underlay" ipam.ipv6Pools`, "IPPool v4", "ipam.ipv4Pools"}},
		{"network ipam.ipv4Pools", Input{IfName: "net1", Network: "underlay", NAD: Families{IPv4: []string{"v4", "v6"}}},
			[]string{`network "underlay" ipam.ipv4Pools`, "IPPool v6", "ipam.ipv6Pools"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.in.Pools = pools
			_, _, err := Candidates(parsed(t, c.in))
			if err == nil {
				t.Fatal("accepted a pool of the other family")
			}
			for _, w := range c.wants {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
	// the right families, and pools the cache does not know yet, pass
	in := Input{IfName: "net1", Pools: pools, Pod: pod(map[string]string{v1.AnnotationIPPool: `{"ipv4":["v4","unknown"],"ipv6":["v6"]}`}, nil)}
	if _, _, err := Candidates(parsed(t, in)); err != nil {
		t.Fatal(err)
	}
}

// A pod naming a Subnet uses its workload's application pool, whatever the kind: a
// CronJob's pod (its Job read by the caller), a DaemonSet's, a third-party controller's;
// the pool name does not depend on which of the listed Subnets it was carved from.
func TestSubnetAnnotationLeadsToTheWorkloadsPool(t *testing.T) {
	ann := map[string]string{v1.AnnotationSubnet: `{"ipv4":["full","roomy"],"ipv6":["s6"]}`}
	owned := func(apiVersion, kind, name string) *corev1.Pod {
		p := pod(ann, nil)
		p.OwnerReferences = []metav1.OwnerReference{{APIVersion: apiVersion, Kind: kind, Name: name, Controller: ptr.To(true)}}
		return p
	}
	cron := &metav1.OwnerReference{APIVersion: "batch/v1", Kind: "CronJob", Name: "nightly", Controller: ptr.To(true)}
	for _, c := range []struct {
		pod   *corev1.Pod
		above *metav1.OwnerReference
		want  apppool.Workload
	}{
		{owned("batch/v1", "Job", "nightly-2900"), cron, apppool.Workload{Kind: "CronJob", Namespace: "ns", Name: "nightly"}},
		{owned("batch/v1", "Job", "once"), nil, apppool.Workload{Kind: "Job", Namespace: "ns", Name: "once"}},
		{owned("apps/v1", "DaemonSet", "agent"), nil, apppool.Workload{Kind: "DaemonSet", Namespace: "ns", Name: "agent"}},
		{owned("example.com/v1", "Widget", "w"), nil, apppool.Workload{Kind: "Widget.example.com", Namespace: "ns", Name: "w"}},
	} {
		in := parsed(t, Input{Pod: c.pod, IfName: "net1", WorkloadAbove: c.above})
		f, src, err := Candidates(in)
		if err != nil || src != SourceAppPool || strings.Join(f.IPv4, ",") != c.want.PoolName(v1.IPv4) || strings.Join(f.IPv6, ",") != c.want.PoolName(v1.IPv6) {
			t.Errorf("%s: %v %s %v, want the pools of %v", c.pod.OwnerReferences[0].Name, f, src, err, c.want)
		}
	}
	if _, _, err := Candidates(parsed(t, Input{Pod: pod(ann, nil), IfName: "net1"})); err == nil || !strings.Contains(err.Error(), "no controller") {
		t.Errorf("a bare pod naming a Subnet: %v", err)
	}
}
