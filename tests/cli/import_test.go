package cli

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/kubectlplugin/importer"
)

// peer creates a peer IPAM's object (as unstructured: the tests, like the plugin, do not
// depend on the peer's Go module); status, when given, is written through the status
// subresource when the kind has one, else with the object.
func peer(t *testing.T, apiVersion, kind, ns, name string, spec, status map[string]any, statusSubresource bool) {
	t.Helper()
	u := &unstructured.Unstructured{Object: map[string]any{"apiVersion": apiVersion, "kind": kind}}
	u.SetNamespace(ns)
	u.SetName(name)
	if spec != nil {
		u.Object["spec"] = spec
	}
	if status != nil && !statusSubresource {
		u.Object["status"] = status
	}
	create(t, u)
	if status != nil && statusSubresource {
		u.Object["status"] = status
		if err := suite.client.Status().Update(context.Background(), u); err != nil {
			t.Fatalf("%s %s status: %v", kind, name, err)
		}
	}
}

func spiderPool(t *testing.T, name string, spec map[string]any, allocated map[string]map[string]string) {
	t.Helper()
	var status map[string]any
	if allocated != nil {
		data, _ := json.Marshal(allocated)
		status = map[string]any{"allocatedIPs": string(data), "allocatedIPCount": int64(len(allocated))}
	}
	peer(t, "spiderpool.spidernet.io/v2beta1", "SpiderIPPool", "", name, spec, status, true)
}

func wherePool(t *testing.T, ns, name, rng string, allocations map[string]any) {
	t.Helper()
	peer(t, "whereabouts.cni.cncf.io/v1alpha1", "IPPool", ns, name, map[string]any{"range": rng, "allocations": allocations}, nil, false)
}

// importCleanup deletes, after the test, every object the import created.
func importCleanup(t *testing.T) {
	t.Cleanup(func() {
		ctx := context.Background()
		sel := client.MatchingLabels{"underpool.io/imported": "true"}
		eps := &v1.EndpointList{}
		_ = suite.client.List(ctx, eps, sel)
		for i := range eps.Items {
			ep := &eps.Items[i]
			ep.Finalizers = nil
			_ = suite.client.Update(ctx, ep)
			_ = suite.client.Delete(ctx, ep)
		}
		for _, l := range []client.ObjectList{&v1.IPPoolList{}, &v1.SubnetList{}, &v1.ReservedIPList{}} {
			_ = suite.client.List(ctx, l, sel)
			items, _ := metaItems(l)
			for _, o := range items {
				if err := suite.client.Delete(ctx, o); err != nil && !apierrors.IsNotFound(err) {
					t.Logf("cleanup %s: %v", o.GetName(), err)
				}
				if _, ok := o.(*v1.IPPool); ok { // no garbage collector runs here to follow its owner
					alloc := &v1.PoolAllocation{ObjectMeta: metav1.ObjectMeta{Name: o.GetName()}}
					if err := suite.client.Delete(ctx, alloc); err != nil && !apierrors.IsNotFound(err) {
						t.Logf("cleanup PoolAllocation %s: %v", o.GetName(), err)
					}
				}
			}
		}
	})
}

func metaItems(l client.ObjectList) ([]client.Object, error) {
	var out []client.Object
	switch l := l.(type) {
	case *v1.IPPoolList:
		for i := range l.Items {
			out = append(out, &l.Items[i])
		}
	case *v1.SubnetList:
		for i := range l.Items {
			out = append(out, &l.Items[i])
		}
	case *v1.ReservedIPList:
		for i := range l.Items {
			out = append(out, &l.Items[i])
		}
	}
	return out, nil
}

func getPool(t *testing.T, name string) (*v1.IPPool, bool) {
	t.Helper()
	p := &v1.IPPool{}
	err := suite.client.Get(context.Background(), client.ObjectKey{Name: name}, p)
	if apierrors.IsNotFound(err) {
		return nil, false
	}
	if err != nil {
		t.Fatalf("get IPPool %s: %v", name, err)
	}
	return p, true
}

func getEndpoint(t *testing.T, ns, name string) (*v1.Endpoint, bool) {
	t.Helper()
	ep := &v1.Endpoint{}
	err := suite.client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, ep)
	if apierrors.IsNotFound(err) {
		return nil, false
	}
	if err != nil {
		t.Fatalf("get Endpoint %s/%s: %v", ns, name, err)
	}
	return ep, true
}

// addresses lists an Endpoint's addresses as "ifname containerID address pool".
func addresses(ep *v1.Endpoint) []string {
	var out []string
	for _, itf := range ep.Status.Interfaces {
		for _, ip := range itf.IPs {
			out = append(out, strings.Join([]string{itf.Interface, itf.ContainerID, ip.Address, ip.Pool}, " "))
		}
	}
	return out
}

func wantSame(t *testing.T, what string, got, want []string) {
	t.Helper()
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("%s:\n got  %q\n want %q", what, got, want)
	}
}

func importReport(t *testing.T, args ...string) importer.Report {
	t.Helper()
	var rep importer.Report
	pluginJSON(t, &rep, append([]string{"import"}, args...)...)
	return rep
}

func skippedOf(rep importer.Report) []string {
	var out []string
	for _, s := range rep.Skipped {
		out = append(out, s.Address+" "+s.Pod+": "+s.Reason)
	}
	return out
}

func changesOf(rep importer.Report) []string {
	var out []string
	for _, c := range rep.Changes {
		out = append(out, c.Action+" "+c.Kind+" "+c.Name)
	}
	return out
}

func TestImport(t *testing.T) {
	cases := []struct {
		name string
		run  func(t *testing.T)
	}{
		{"spiderpool: live pod kept, gone pod and other incarnation skipped; dry run writes nothing; a re-run changes nothing", func(t *testing.T) {
			ns := namespace(t, nil, nil)
			a := pod(t, ns, "a", podOpts{node: "node-1", owner: owner("ReplicaSet", "web-1234")})
			pod(t, ns, "b", podOpts{node: "node-1"})
			spiderPool(t, "imp-v4", map[string]any{"subnet": "10.240.1.0/24", "ips": []any{"10.240.1.10-10.240.1.50"}, "gateway": "10.240.1.1",
				"routes": []any{map[string]any{"dst": "10.0.0.0/8", "gw": "10.240.1.1"}}, "multusName": []any{"kube-system/macvlan"}},
				map[string]map[string]string{
					"10.240.1.10": {"interface": "eth0", "pod": ns + "/a", "podUid": string(a.UID)},
					"10.240.1.11": {"interface": "eth0", "pod": ns + "/gone", "podUid": "11111111-0000-0000-0000-000000000000"},
					"10.240.1.12": {"interface": "eth0", "pod": ns + "/b", "podUid": "22222222-0000-0000-0000-000000000000"},
				})
			importCleanup(t)

			out, err := plugin(t, "import", "spiderpool", "--dry-run")
			if err != nil {
				t.Fatalf("dry run: %v\n%s", err, out)
			}
			for _, want := range [][]string{
				{"+", "IPPool", "imp-v4", "SpiderIPPool imp-v4", "10.240.1.0/24, 1 allocated: 10.240.1.10"},
				{"+", "Endpoint", ns + "/a", "SpiderIPPool imp-v4", "eth0 10.240.1.10/24 (imp-v4)"},
				{"!", "skipped", "10.240.1.11", ns + "/gone: the pod no longer exists"},
				{"!", "skipped", "10.240.1.12", "another incarnation"},
				{"dry run: would create 2 objects, 2 addresses skipped; the spiderpool objects are left as they are"},
			} {
				if !hasLine(out, want...) {
					t.Errorf("dry run output has no line with %q:\n%s", want, out)
				}
			}
			if _, ok := getPool(t, "imp-v4"); ok {
				t.Fatal("--dry-run created IPPool imp-v4")
			}
			if _, ok := getEndpoint(t, ns, "a"); ok {
				t.Fatal("--dry-run created Endpoint a")
			}

			rep := importReport(t, "spiderpool")
			wantSame(t, "changes", changesOf(rep), []string{"create IPPool imp-v4", "create Endpoint " + ns + "/a"})
			wantSame(t, "skipped", skippedOf(rep), []string{
				"10.240.1.11 " + ns + "/gone: the pod no longer exists",
				"10.240.1.12 " + ns + "/b: the address was given to pod UID 22222222-0000-0000-0000-000000000000; pod " + ns + "/b is now UID " + string(mustPod(t, ns, "b").UID) + ", another incarnation",
			})
			p, ok := getPool(t, "imp-v4")
			if !ok {
				t.Fatal("IPPool imp-v4 not created")
			}
			if s, _ := getState(t, "imp-v4"); s.Allocated != "10" || s.AllocatedIPCount != 1 || s.TotalIPCount != 41 {
				t.Errorf("PoolAllocation imp-v4 state = %+v, want allocated 10 (count 1 of 41)", s)
			}
			if _, importing := p.Annotations[v1.ImportingAnnotation]; importing {
				t.Errorf("IPPool imp-v4 annotations = %v, want %s removed once its state is written", p.Annotations, v1.ImportingAnnotation)
			}
			if p.Spec.Gateway != "10.240.1.1" || len(p.Spec.Routes) != 1 || strings.Join(p.Spec.MultusNames, ",") != "kube-system/macvlan" {
				t.Errorf("IPPool spec = %+v", p.Spec)
			}
			ep, ok := getEndpoint(t, ns, "a")
			if !ok {
				t.Fatal("Endpoint a not created")
			}
			wantSame(t, "Endpoint a", addresses(ep), []string{"eth0 " + v1.UnknownSandboxID(string(a.UID)) + " 10.240.1.10/24 imp-v4"})
			if ep.Status.PodUID != string(a.UID) || ep.Status.Node != "node-1" || ep.Status.OwnerKind != "ReplicaSet" || ep.Status.OwnerName != "web-1234" ||
				len(ep.Finalizers) != 1 || ep.Finalizers[0] != v1.EndpointProtection || ep.Status.Interfaces[0].IPs[0].Gateway != "10.240.1.1" {
				t.Errorf("Endpoint a = %+v %+v", ep.ObjectMeta.Finalizers, ep.Status)
			}
			// the peer's pool is left as it was
			sp := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "spiderpool.spidernet.io/v2beta1", "kind": "SpiderIPPool"}}
			if err := suite.client.Get(context.Background(), client.ObjectKey{Name: "imp-v4"}, sp); err != nil {
				t.Errorf("SpiderIPPool imp-v4 after the import: %v", err)
			}
			// the plugin's other views see the imported state
			if out, err := plugin(t, "who", "10.240.1.10"); err != nil || !strings.Contains(out, ns+"/a") {
				t.Errorf("who 10.240.1.10 after the import: %v\n%s", err, out)
			}

			again := importReport(t, "spiderpool")
			wantSame(t, "re-run", changesOf(again), []string{"unchanged IPPool imp-v4", "unchanged Endpoint " + ns + "/a"})
		}},
		{"spiderpool: dual stack on one interface, node and addresses from the SpiderEndpoint", func(t *testing.T) {
			ns := namespace(t, nil, nil)
			c := pod(t, ns, "c", podOpts{node: "node-2"})
			spiderPool(t, "imp-ds4", map[string]any{"subnet": "10.240.2.0/24", "gateway": "10.240.2.1", "vlan": int64(20)},
				map[string]map[string]string{"10.240.2.7": {"interface": "net1", "pod": ns + "/c", "podUid": string(c.UID)}})
			spiderPool(t, "imp-ds6", map[string]any{"subnet": "fd00:240:2::/64", "ips": []any{"fd00:240:2::10-fd00:240:2::ff"}}, nil)
			peer(t, "spiderpool.spidernet.io/v2beta1", "SpiderEndpoint", ns, "c", nil, map[string]any{
				"current": map[string]any{"uid": string(c.UID), "node": "node-2", "ips": []any{map[string]any{
					"interface": "net1", "ipv4": "10.240.2.7/24", "ipv4Pool": "imp-ds4", "ipv6": "fd00:240:2::10/64", "ipv6Pool": "imp-ds6"}}},
				"ownerControllerType": "None", "ownerControllerName": "c"}, false)
			importCleanup(t)

			rep := importReport(t, "spiderpool", "--prefix", "sp-")
			wantSame(t, "changes", changesOf(rep), []string{"create IPPool sp-imp-ds4", "create IPPool sp-imp-ds6", "create Endpoint " + ns + "/c"})
			ep, ok := getEndpoint(t, ns, "c")
			if !ok {
				t.Fatal("Endpoint c not created")
			}
			cid := v1.UnknownSandboxID(string(c.UID))
			wantSame(t, "Endpoint c", addresses(ep), []string{"net1 " + cid + " 10.240.2.7/24 sp-imp-ds4", "net1 " + cid + " fd00:240:2::10/64 sp-imp-ds6"})
			if ip := ep.Status.Interfaces[0].IPs[0]; ip.Vlan != 20 || ip.Gateway != "10.240.2.1" {
				t.Errorf("IPv4 address = %+v, want vlan 20 and gateway 10.240.2.1", ip)
			}
			if s6, ok := getState(t, "sp-imp-ds6"); !ok || s6.Allocated != "16" || s6.TotalIPCount != 240 {
				t.Errorf("PoolAllocation sp-imp-ds6 state = %+v (pool there: %v), want allocated 16 of 240", s6, ok)
			}
		}},
		{"spiderpool: reserved IPs and subnets, affinities by name", func(t *testing.T) {
			ns := namespace(t, nil, nil)
			peer(t, "spiderpool.spidernet.io/v2beta1", "SpiderReservedIP", "", "imp-keep", map[string]any{"ips": []any{"10.240.3.5", "10.240.3.8-10.240.3.9"}}, nil, false)
			peer(t, "spiderpool.spidernet.io/v2beta1", "SpiderSubnet", "", "imp-net", map[string]any{"subnet": "10.240.3.0/24", "gateway": "10.240.3.1"}, nil, true)
			spiderPool(t, "imp-app", map[string]any{"subnet": "10.240.3.0/24", "ips": []any{"10.240.3.100-10.240.3.120"}, "namespaceName": []any{ns}, "nodeName": []any{"node-3"}}, nil)
			importCleanup(t)

			rep := importReport(t, "spiderpool")
			wantSame(t, "changes", changesOf(rep), []string{"create Subnet imp-net", "create ReservedIP imp-keep", "create IPPool imp-app"})
			rip := &v1.ReservedIP{}
			if err := suite.client.Get(context.Background(), client.ObjectKey{Name: "imp-keep"}, rip); err != nil || strings.Join(rip.Spec.IPs, ",") != "10.240.3.5,10.240.3.8-10.240.3.9" {
				t.Errorf("ReservedIP imp-keep = %+v, %v", rip.Spec, err)
			}
			sub := &v1.Subnet{}
			if err := suite.client.Get(context.Background(), client.ObjectKey{Name: "imp-net"}, sub); err != nil || sub.Spec.Subnet != "10.240.3.0/24" || sub.Spec.Gateway != "10.240.3.1" {
				t.Errorf("Subnet imp-net = %+v, %v", sub.Spec, err)
			}
			p, _ := getPool(t, "imp-app")
			if p == nil || p.Spec.NamespaceAffinity == nil || p.Spec.NamespaceAffinity.MatchExpressions[0].Values[0] != ns ||
				p.Spec.NodeAffinity == nil || p.Spec.NodeAffinity.MatchExpressions[0].Key != "kubernetes.io/hostname" {
				t.Errorf("IPPool imp-app = %+v", p)
			}
			if len(rep.Notes) == 0 {
				t.Error("no note on namespaceName/nodeName")
			}
		}},
		{"spiderpool: an IPPool of that name with another spec refuses the whole import", func(t *testing.T) {
			pool(t, "imp-clash", poolSpec{IPPoolSpec: v1.IPPoolSpec{Subnet: "10.240.4.0/24"}})
			peer(t, "spiderpool.spidernet.io/v2beta1", "SpiderReservedIP", "", "imp-clash-keep", map[string]any{"ips": []any{"10.240.4.5"}}, nil, false)
			spiderPool(t, "imp-clash", map[string]any{"subnet": "10.240.4.0/24", "ips": []any{"10.240.4.10-10.240.4.20"}}, nil)
			importCleanup(t)
			out, err := plugin(t, "import", "spiderpool")
			if err == nil || !strings.Contains(err.Error(), "SpiderIPPool imp-clash would become IPPool imp-clash, but IPPool imp-clash exists with another spec") ||
				!strings.Contains(err.Error(), "--prefix") {
				t.Fatalf("import over a different pool: err %v\n%s", err, out)
			}
			if err := suite.client.Get(context.Background(), client.ObjectKey{Name: "imp-clash-keep"}, &v1.ReservedIP{}); !apierrors.IsNotFound(err) {
				t.Errorf("a refused import wrote ReservedIP imp-clash-keep (get: %v)", err)
			}
			// with a prefix the names differ, but the addresses overlap
			_, err = plugin(t, "import", "spiderpool", "--prefix", "new-", "--dry-run")
			if err == nil || !strings.Contains(err.Error(), "overlap IPPool imp-clash (first shared address 10.240.4.10)") {
				t.Fatalf("import overlapping a pool: err %v", err)
			}
		}},
		{"whereabouts: live pods kept with their container IDs, dual stack merged, gone pod and leftover reservation skipped", func(t *testing.T) {
			ns := namespace(t, nil, nil)
			a := pod(t, ns, "wa", podOpts{node: "node-4"})
			pod(t, ns, "done", podOpts{node: "node-4", phase: corev1.PodSucceeded})
			wherePool(t, ns, "10.240.6.0-24", "10.240.6.0/24", map[string]any{
				"5":  map[string]any{"id": "cid-wa", "podref": ns + "/wa", "ifname": "net1"},
				"6":  map[string]any{"id": "cid-gone", "podref": ns + "/gone", "ifname": "net1"},
				"7":  map[string]any{"id": "cid-done", "podref": ns + "/done", "ifname": "net1"},
				"99": map[string]any{"id": "cid-wa2", "podref": ns + "/wa", "ifname": "net2"},
			})
			wherePool(t, ns, "fd00-240-6---64", "fd00:240:6::/64", map[string]any{
				"5": map[string]any{"id": "cid-wa", "podref": ns + "/wa", "ifname": "net1"},
			})
			peer(t, "whereabouts.cni.cncf.io/v1alpha1", "OverlappingRangeIPReservation", ns, "10.240.6.5", map[string]any{"containerid": "cid-wa", "podref": ns + "/wa", "ifname": "net1"}, nil, false)
			peer(t, "whereabouts.cni.cncf.io/v1alpha1", "OverlappingRangeIPReservation", ns, "10.240.6.9", map[string]any{"containerid": "cid-old", "podref": ns + "/old"}, nil, false)
			importCleanup(t)

			out, err := plugin(t, "import", "whereabouts", "--dry-run")
			if err != nil || !strings.Contains(out, "dry run: would create 3 objects, 3 addresses skipped") {
				t.Fatalf("dry run: %v\n%s", err, out)
			}
			rep := importReport(t, "whereabouts", "--prefix", "wb-")
			wantSame(t, "changes", changesOf(rep), []string{"create IPPool wb-10.240.6.0-24", "create IPPool wb-fd00-240-6---64", "create Endpoint " + ns + "/wa"})
			wantSame(t, "skipped", skippedOf(rep), []string{
				"10.240.6.9 " + ns + "/old: no whereabouts IPPool allocates it (a leftover reservation)",
				"10.240.6.6 " + ns + "/gone: the pod no longer exists",
				"10.240.6.7 " + ns + "/done: the pod has finished (phase Succeeded): its sandbox is gone",
			})
			ep, ok := getEndpoint(t, ns, "wa")
			if !ok {
				t.Fatal("Endpoint wa not created")
			}
			wantSame(t, "Endpoint wa", addresses(ep), []string{
				"net1 cid-wa 10.240.6.5/24 wb-10.240.6.0-24", "net1 cid-wa fd00:240:6::5/64 wb-fd00-240-6---64", "net2 cid-wa2 10.240.6.99/24 wb-10.240.6.0-24"})
			if ep.Status.PodUID != string(a.UID) || ep.Status.Interfaces[0].PodUID != string(a.UID) {
				t.Errorf("Endpoint wa pod UID = %s, want %s", ep.Status.PodUID, a.UID)
			}
			if s, ok := getState(t, "wb-10.240.6.0-24"); !ok || s.Allocated != "5,99" || s.AllocatedIPCount != 2 || s.TotalIPCount != 254 {
				t.Errorf("PoolAllocation wb-10.240.6.0-24 state = %+v (pool there: %v)", s, ok)
			}
		}},
		{"whereabouts: an existing identical pool gains the addresses it lacks; one that marks them for another pod refuses", func(t *testing.T) {
			ns := namespace(t, nil, nil)
			pod(t, ns, "wb", podOpts{node: "node-5"})
			pod(t, ns, "wc", podOpts{node: "node-5"})
			pool(t, "10.240.7.0-24", poolSpec{IPPoolSpec: v1.IPPoolSpec{Subnet: "10.240.7.0/24"}, allocated: "3"})
			wherePool(t, ns, "10.240.7.0-24", "10.240.7.0/24", map[string]any{"4": map[string]any{"id": "cid-wb", "podref": ns + "/wb", "ifname": "net1"}})
			importCleanup(t)
			rep := importReport(t, "whereabouts")
			wantSame(t, "changes", changesOf(rep), []string{"mark IPPool 10.240.7.0-24", "create Endpoint " + ns + "/wb"})
			if s, _ := getState(t, "10.240.7.0-24"); s.Allocated != "3-4" || s.AllocatedIPCount != 2 {
				t.Errorf("PoolAllocation 10.240.7.0-24 state = %+v, want 3-4", s)
			}
			// offset 3 is marked for a pod underpool knows nothing about
			u := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "whereabouts.cni.cncf.io/v1alpha1", "kind": "IPPool"}}
			if err := suite.client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "10.240.7.0-24"}, u); err != nil {
				t.Fatal(err)
			}
			_ = unstructured.SetNestedField(u.Object, map[string]any{"id": "cid-wc", "podref": ns + "/wc", "ifname": "net1"}, "spec", "allocations", "3")
			if err := suite.client.Update(context.Background(), u); err != nil {
				t.Fatal(err)
			}
			_, err := plugin(t, "import", "whereabouts", "--dry-run")
			if err == nil || !strings.Contains(err.Error(), "IPPool 10.240.7.0-24 already marks 10.240.7.3 allocated, but not for pod "+ns+"/wc") {
				t.Fatalf("import over an address marked for another pod: err %v", err)
			}
		}},
		{"no peer installed objects: the error says what to check", func(t *testing.T) {
			_, err := plugin(t, "import", "whereabouts")
			if err == nil || !strings.Contains(err.Error(), "is whereabouts installed") {
				t.Fatalf("import with no whereabouts IPPool: %v", err)
			}
			_, err = plugin(t, "import", "calico")
			if err == nil || !strings.Contains(err.Error(), "unknown source") {
				t.Fatalf("import calico: %v", err)
			}
		}},
	}
	for _, c := range cases {
		t.Run(c.name, c.run)
	}
}

// hasLine reports whether a line of out starts with parts[0] and holds every part, in order.
func hasLine(out string, parts ...string) bool {
	for _, line := range strings.Split(out, "\n") {
		if !strings.HasPrefix(line, parts[0]) {
			continue
		}
		rest, ok := line, true
		for _, p := range parts {
			i := strings.Index(rest, p)
			if i < 0 {
				ok = false
				break
			}
			rest = rest[i+len(p):]
		}
		if ok {
			return true
		}
	}
	return false
}

func mustPod(t *testing.T, ns, name string) *corev1.Pod {
	t.Helper()
	p := &corev1.Pod{}
	if err := suite.client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, p); err != nil {
		t.Fatal(err)
	}
	return p
}
