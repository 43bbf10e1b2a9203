package cli

import (
	"context"
	"strings"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/core/apppool"
	"github.com/underpool/underpool/kubectlplugin"
)

const nodeA = "cli-node-a"

// explainCase builds its objects and returns the explain arguments and what to check.
type explainCase struct {
	name  string
	setup func(t *testing.T) []string
	check func(t *testing.T, ex *kubectlplugin.Explanation)
}

func TestExplainPod(t *testing.T) {
	node(t, nodeA, map[string]string{"zone": "a"})
	for _, tc := range []explainCase{
		{name: "pod annotation: affinity, exhausted, quarantined, deleting, then a pool with room", setup: func(t *testing.T) []string {
			ns := namespace(t, nil, nil)
			pool(t, "pa-zone-b", poolSpec{IPPoolSpec: v1.IPPoolSpec{Subnet: "10.251.1.0/24",
				NodeAffinity: &metav1.LabelSelector{MatchLabels: map[string]string{"zone": "b"}}}})
			pool(t, "pa-full", poolSpec{IPPoolSpec: v1.IPPoolSpec{Subnet: "10.251.2.0/30"}, allocated: "1-2"})
			pool(t, "pa-quar", poolSpec{IPPoolSpec: v1.IPPoolSpec{Subnet: "10.251.3.0/30"}, allocated: "1", quarantined: []string{"10.251.3.2"}})
			del := pool(t, "pa-deleting", poolSpec{IPPoolSpec: v1.IPPoolSpec{Subnet: "10.251.4.0/24"}, finalizer: true})
			if err := suite.client.Delete(context.Background(), del); err != nil {
				t.Fatal(err)
			}
			pool(t, "pa-ok", poolSpec{IPPoolSpec: v1.IPPoolSpec{Subnet: "10.251.5.0/24", Gateway: "10.251.5.1"}, allocated: "2-11"})
			pool(t, "pa-after", poolSpec{IPPoolSpec: v1.IPPoolSpec{Subnet: "10.251.6.0/24"}})
			pod(t, ns, "web", podOpts{node: nodeA, annotations: map[string]string{
				v1.AnnotationIPPool: `{"ipv4":["pa-zone-b","pa-missing","pa-full","pa-quar","pa-deleting","pa-ok","pa-after"]}`}})
			return []string{"explain", "pod", ns + "/web", "--interface", "net1"}
		}, check: func(t *testing.T, ex *kubectlplugin.Explanation) {
			x := only(t, ex)
			wantChain(t, x, "chosen", "not reached", "not reached", "not reached", "not reached")
			if x.Rule != "pod annotation" || !strings.Contains(x.Chain[0].Detail, v1.AnnotationIPPool) {
				t.Errorf("rule %q, chain[0] %+v; want the pod annotation", x.Rule, x.Chain[0])
			}
			wantPools(t, x, "IPv4", []wantPool{
				{"pa-zone-b", "skipped", `nodeAffinity "zone=b" does not match node cli-node-a`},
				{"pa-missing", "skipped", "no such IPPool"},
				{"pa-full", "skipped", "exhausted: 2 usable, 2 allocated"},
				{"pa-quar", "skipped", "1 quarantined"},
				{"pa-deleting", "skipped", "being deleted"},
				{"pa-ok", "would allocate", ""},
				{"pa-after", "not reached", ""},
			})
			if f := x.Families[0]; f.Chosen != "pa-ok" || f.Pools[5].Free != 253-10 {
				t.Errorf("chosen %q with %d free; want pa-ok with 243 (253 usable minus 10 allocated)", f.Chosen, f.Pools[5].Free)
			}
			if !strings.Contains(x.Outcome, "ipamd would allocate from pa-ok") {
				t.Errorf("outcome %q; want the pod to get an address from pa-ok", x.Outcome)
			}
		}},
		{name: "network config pools from the NAD, namespace and multus affinity, what the pod holds", setup: func(t *testing.T) []string {
			ns := namespace(t, map[string]string{"team": "red"}, nil)
			nad(t, ns, "macvlan-a", `{"cniVersion":"1.0.0","name":"macvlan-a","type":"underpool","delegate":{"type":"macvlan","master":"eth0"},"ipam":{"ipv4Pools":["pb-ns","pb-multus","pb-ok"]}}`)
			pool(t, "pb-ns", poolSpec{IPPoolSpec: v1.IPPoolSpec{Subnet: "10.251.10.0/24",
				NamespaceAffinity: &metav1.LabelSelector{MatchLabels: map[string]string{"team": "blue"}}}})
			pool(t, "pb-multus", poolSpec{IPPoolSpec: v1.IPPoolSpec{Subnet: "10.251.11.0/24", MultusNames: []string{"other-net"}}})
			pool(t, "pb-ok", poolSpec{IPPoolSpec: v1.IPPoolSpec{Subnet: "10.251.12.0/24"}, allocated: "5"})
			p := pod(t, ns, "db", podOpts{node: nodeA, phase: corev1.PodRunning, annotations: map[string]string{"k8s.v1.cni.cncf.io/networks": "macvlan-a"}})
			endpoint(t, ns, "db", nodeA, string(p.UID), "", "", attach{containerID: "c0ffee0000000001", ifName: "net1", network: "macvlan-a",
				podUID: string(p.UID), ips: []v1.EndpointIP{ip("10.251.12.5/24", "pb-ok")}})
			return []string{"explain", "pod", "db", "-n", ns}
		}, check: func(t *testing.T, ex *kubectlplugin.Explanation) {
			x := only(t, ex)
			if x.Interface != "net1" || x.Network != "macvlan-a" || !strings.HasSuffix(x.NAD, "/macvlan-a") {
				t.Errorf("interface %s network %s NAD %s; want net1 on macvlan-a", x.Interface, x.Network, x.NAD)
			}
			wantChain(t, x, "not set", "not set", "not set", "chosen", "not reached")
			wantPools(t, x, "IPv4", []wantPool{
				{"pb-ns", "skipped", `namespaceAffinity "team=blue" does not match namespace`},
				{"pb-multus", "skipped", `multusNames [other-net] does not include network "macvlan-a"`},
				{"pb-ok", "would allocate", ""},
			})
			if len(x.Holds) != 1 || !x.Holds[0].ThisPod || !strings.Contains(x.Outcome, "holds 10.251.12.5/24 (pb-ok) on node cli-node-a") {
				t.Errorf("holds %+v outcome %q; want the Endpoint's address", x.Holds, x.Outcome)
			}
		}},
		{name: "namespace default wins over the network's pools", setup: func(t *testing.T) []string {
			ns := namespace(t, nil, map[string]string{v1.AnnotationNSDefaultIPv4: "pc-ns"})
			nad(t, ns, "net-c", `{"cniVersion":"1.0.0","name":"net-c","plugins":[{"type":"macvlan","master":"eth0","ipam":{"type":"underpool-ipam","ipv4Pools":["pc-nad"]}}]}`)
			pool(t, "pc-ns", poolSpec{IPPoolSpec: v1.IPPoolSpec{Subnet: "10.251.20.0/24"}})
			pool(t, "pc-nad", poolSpec{IPPoolSpec: v1.IPPoolSpec{Subnet: "10.251.21.0/24"}})
			pod(t, ns, "app", podOpts{node: nodeA, annotations: map[string]string{"k8s.v1.cni.cncf.io/networks": `[{"name":"net-c","interface":"data0"}]`}})
			return []string{"explain", "pod", ns + "/app", "--interface", "data0"}
		}, check: func(t *testing.T, ex *kubectlplugin.Explanation) {
			x := only(t, ex)
			wantChain(t, x, "not set", "not set", "chosen", "not reached", "not reached")
			if !strings.Contains(x.Chain[3].Detail, "pc-nad") {
				t.Errorf("chain[3] %+v; want the NAD's ipam pools shown though not reached", x.Chain[3])
			}
			wantPools(t, x, "IPv4", []wantPool{{"pc-ns", "would allocate", ""}})
		}},
		{name: "cluster default pools: pod affinity leaves no IPv4 pool, with the sandbox failure", setup: func(t *testing.T) []string {
			ns := namespace(t, nil, nil)
			pool(t, "pd-v4", poolSpec{IPPoolSpec: v1.IPPoolSpec{Subnet: "10.251.30.0/24", Default: true,
				PodAffinity: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}}})
			pool(t, "pd-v6", poolSpec{IPPoolSpec: v1.IPPoolSpec{Subnet: "fd00:251::/64", Default: true}})
			p := pod(t, ns, "lonely", podOpts{node: nodeA, labels: map[string]string{"app": "db"}})
			sandboxFailure(t, p, "plugin type=\"underpool\" failed (add): no IPv4 address for eth0 from cluster default pools", time.Now().Add(-10*time.Second))
			return []string{"explain", "pod", ns + "/lonely"}
		}, check: func(t *testing.T, ex *kubectlplugin.Explanation) {
			x := only(t, ex)
			if x.Interface != "eth0" || len(ex.Notes) == 0 {
				t.Errorf("interface %s notes %v; want eth0 with a note that the pod names no network", x.Interface, ex.Notes)
			}
			wantChain(t, x, "not set", "not set", "not set", "not set", "chosen")
			wantPools(t, x, "IPv4", []wantPool{{"pd-v4", "skipped", `podAffinity "app=web" does not match the pod's labels`}})
			wantPools(t, x, "IPv6", []wantPool{{"pd-v6", "would allocate", ""}})
			if !strings.Contains(x.Outcome, "no address: no IPv4 pool can serve it") {
				t.Errorf("outcome %q; want no IPv4 pool", x.Outcome)
			}
			if e := ex.LastSandboxFailure; e == nil || !strings.Contains(e.Message, "no IPv4 address") || e.Count != 3 {
				t.Errorf("last sandbox failure %+v; want the kubelet's event", e)
			}
		}},
		{name: "an IPv6 pool in the IPv4 list", setup: func(t *testing.T) []string {
			ns := namespace(t, nil, nil)
			pool(t, "pe-v6", poolSpec{IPPoolSpec: v1.IPPoolSpec{Subnet: "fd00:252::/64"}})
			pod(t, ns, "wrong", podOpts{node: nodeA, annotations: map[string]string{v1.AnnotationIPPool: `{"ipv4":["pe-v6"]}`}})
			return []string{"explain", "pod", ns + "/wrong", "--interface", "net1"}
		}, check: func(t *testing.T, ex *kubectlplugin.Explanation) {
			x := only(t, ex)
			if !strings.Contains(x.Error, "IPPool pe-v6, whose subnet fd00:252::/64 is IPv6, not IPv4") || !strings.HasPrefix(x.Outcome, "no address: ") {
				t.Errorf("error %q outcome %q; want the family mistake named", x.Error, x.Outcome)
			}
			if len(x.Families) != 0 {
				t.Errorf("families %+v; ipamd refuses the list before trying any pool", x.Families)
			}
		}},
		{name: "application pool not carved yet", setup: func(t *testing.T) []string {
			ns := namespace(t, nil, nil)
			pod(t, ns, "cache-0", podOpts{node: nodeA, owner: owner("StatefulSet", "cache"),
				annotations: map[string]string{v1.AnnotationSubnet: `{"ipv4":["subnet-x"]}`}})
			return []string{"explain", "pod", ns + "/cache-0", "--interface", "net1"}
		}, check: func(t *testing.T, ex *kubectlplugin.Explanation) {
			x := only(t, ex)
			wantChain(t, x, "not set", "chosen", "not reached", "not reached", "not reached")
			if len(x.Families) != 1 || !strings.Contains(x.Families[0].Pools[0].Reason, "application pool not created yet") {
				t.Errorf("families %+v; want the application pool reported as not created", x.Families)
			}
		}},
		{name: "a CronJob's pod, on the CronJob's application pool", setup: func(t *testing.T) []string {
			ns := namespace(t, nil, nil)
			job := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "nightly-2900", OwnerReferences: []metav1.OwnerReference{{
				APIVersion: "batch/v1", Kind: "CronJob", Name: "nightly", UID: "00000000-0000-0000-0000-000000000002", Controller: ptr.To(true)}}},
				Spec: batchv1.JobSpec{Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever,
					Containers: []corev1.Container{{Name: "c", Image: "pause"}}}}}}
			create(t, job)
			pod(t, ns, "nightly-2900-x", podOpts{node: nodeA, annotations: map[string]string{v1.AnnotationSubnet: `{"ipv4":["subnet-x"]}`},
				owner: &metav1.OwnerReference{APIVersion: "batch/v1", Kind: "Job", Name: job.Name, UID: job.UID, Controller: ptr.To(true)}})
			return []string{"explain", "pod", ns + "/nightly-2900-x", "--interface", "net1"}
		}, check: func(t *testing.T, ex *kubectlplugin.Explanation) {
			x := only(t, ex)
			want := apppool.Workload{Kind: apppool.KindCronJob, Namespace: strings.Split(ex.Pod, "/")[0], Name: "nightly"}.PoolName(v1.IPv4)
			if len(x.Families) != 1 || x.Families[0].Pools[0].Pool != want {
				t.Errorf("families %+v; want the CronJob's pool %s (the pod names only its Job)", x.Families, want)
			}
		}},
		{name: "a network whose NAD is missing", setup: func(t *testing.T) []string {
			ns := namespace(t, nil, nil)
			pod(t, ns, "orphaned", podOpts{node: nodeA, annotations: map[string]string{"k8s.v1.cni.cncf.io/networks": "nope"}})
			return []string{"explain", "pod", ns + "/orphaned"}
		}, check: func(t *testing.T, ex *kubectlplugin.Explanation) {
			x := only(t, ex)
			if !strings.Contains(x.Outcome, "NetworkAttachmentDefinition "+strings.Split(ex.Pod, "/")[0]+"/nope not found") {
				t.Errorf("outcome %q; want the missing NAD named", x.Outcome)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := tc.setup(t)
			var ex kubectlplugin.Explanation
			pluginJSON(t, &ex, args...)
			tc.check(t, &ex)
			if t.Failed() || testing.Verbose() {
				out, _ := plugin(t, args...)
				t.Logf("table output:\n%s", out)
			}
		})
	}
}

func TestExplainTable(t *testing.T) {
	ns := namespace(t, nil, nil)
	pool(t, "pt-a", poolSpec{IPPoolSpec: v1.IPPoolSpec{Subnet: "10.251.40.0/24"}})
	pod(t, ns, "p", podOpts{node: nodeA, annotations: map[string]string{v1.AnnotationIPPool: `{"ipv4":["pt-a"]}`}})
	out, err := plugin(t, "explain", "pod", ns+"/p", "--interface", "net1")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Pod:", "Interface net1", "Selection chain", "1. pod annotation", "pt-a", "would allocate", "Outcome:"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	yamlOut, err := plugin(t, "explain", "pod", ns+"/p", "--interface", "net1", "-o", "yaml")
	if err != nil || !strings.Contains(yamlOut, "rule: pod annotation") {
		t.Errorf("-o yaml: %v\n%s", err, yamlOut)
	}
}

func TestExplainErrors(t *testing.T) {
	ns := namespace(t, nil, nil)
	pod(t, ns, "bad", podOpts{node: nodeA, annotations: map[string]string{v1.AnnotationIPPool: `{"ipv4":["a"],"typo":1}`}})
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"pod not found", []string{"explain", "pod", ns + "/x"}, "pod " + ns + "/x not found: check the namespace (-n or NAMESPACE/NAME) and the name"},
		{"not a pod", []string{"explain", "deployment", "x"}, "usage: kubectl underpool explain pod NAMESPACE/NAME"},
		{"bad name", []string{"explain", "pod", "a/b/c"}, `"a/b/c" is not NAMESPACE/NAME or NAME`},
		{"bad output", []string{"explain", "pod", ns + "/bad", "-o", "wide"}, `unknown output format "wide": use -o table, -o json or -o yaml`},
		{"malformed pod annotation", []string{"explain", "pod", ns + "/bad"}, "annotation " + v1.AnnotationIPPool},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := plugin(t, tc.args...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v; want one containing %q", err, tc.want)
			}
		})
	}
}

func only(t *testing.T, ex *kubectlplugin.Explanation) *kubectlplugin.InterfaceExplanation {
	t.Helper()
	if len(ex.Interfaces) != 1 {
		t.Fatalf("explained %d interfaces; want 1: %+v", len(ex.Interfaces), ex.Interfaces)
	}
	return &ex.Interfaces[0]
}

func wantChain(t *testing.T, x *kubectlplugin.InterfaceExplanation, verdicts ...string) {
	t.Helper()
	if len(x.Chain) != len(verdicts) {
		t.Fatalf("chain %+v; want %d rules", x.Chain, len(verdicts))
	}
	for i, v := range verdicts {
		if x.Chain[i].Verdict != v {
			t.Errorf("rule %d (%s): %q; want %q", i+1, x.Chain[i].Rule, x.Chain[i].Verdict, v)
		}
	}
}

type wantPool struct{ name, verdict, reason string }

func wantPools(t *testing.T, x *kubectlplugin.InterfaceExplanation, family string, want []wantPool) {
	t.Helper()
	for _, f := range x.Families {
		if f.Family != family {
			continue
		}
		if len(f.Pools) != len(want) {
			t.Fatalf("%s pools %+v; want %d", family, f.Pools, len(want))
		}
		for i, w := range want {
			got := f.Pools[i]
			if got.Pool != w.name || got.Verdict != w.verdict || !strings.Contains(got.Reason, w.reason) {
				t.Errorf("%s pool %d: %+v; want %s %s %q", family, i, got, w.name, w.verdict, w.reason)
			}
		}
		return
	}
	t.Errorf("no %s family in %+v", family, x.Families)
}
