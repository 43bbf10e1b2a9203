package importer_test

import (
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	v1 "github.com/underpool/underpool/api/v1"
)

func TestSpiderIPPoolBecomesAnIPPoolHoldingOnlyTheLivePodsAddresses(t *testing.T) {
	w := newWorld(t,
		livePod("ns", "a", "node-1", controllerRef("ReplicaSet", "web-1234")),
		livePod("ns", "b", "node-1"),
		spiderIPPool("imp-v4", map[string]any{"subnet": "10.240.1.0/24", "ips": []any{"10.240.1.10-10.240.1.50"}, "gateway": "10.240.1.1",
			"routes": []any{map[string]any{"dst": "10.0.0.0/8", "gw": "10.240.1.1"}}, "multusName": []any{"kube-system/macvlan"}, "default": true},
			map[string]map[string]string{
				"10.240.1.10": {"interface": "eth0", "pod": "ns/a", "podUid": "uid-a"},
				"10.240.1.11": {"interface": "eth0", "pod": "ns/gone", "podUid": "uid-gone"},
				"10.240.1.12": {"interface": "eth0", "pod": "ns/b", "podUid": "uid-b-before"},
			}))

	rep := w.mustRun("spiderpool", "")

	wantSame(t, "changes", changes(rep), []string{"create IPPool imp-v4", "create Endpoint ns/a"})
	wantSame(t, "skipped", skipped(rep), []string{
		"10.240.1.11 ns/gone: the pod no longer exists",
		"10.240.1.12 ns/b: the address was given to pod UID uid-b-before; pod ns/b is now UID uid-b, another incarnation",
	})
	wantNote(t, rep, "1 attachment(s) of live pods have no sandbox ID in the peer's records: each is recorded as "+v1.UnknownSandboxPrefix+"<pod UID>")
	if rep.Source != "spiderpool" || rep.DryRun {
		t.Errorf("report source %q dry run %v", rep.Source, rep.DryRun)
	}
	p := w.pool("imp-v4")
	if s := w.state("imp-v4"); s.Allocated != "10" || s.AllocatedIPCount != 1 || s.TotalIPCount != 41 || s.FreeIPCount != 40 {
		t.Errorf("PoolAllocation imp-v4 state = %+v, want allocated 10 (1 of 41, 40 free)", s)
	}
	if _, importing := p.Annotations[v1.ImportingAnnotation]; importing {
		t.Errorf("IPPool imp-v4 still carries %s after the import: ipamd hands nothing out of it", v1.ImportingAnnotation)
	}
	if p.Spec.Subnet != "10.240.1.0/24" || p.Spec.Gateway != "10.240.1.1" || len(p.Spec.Routes) != 1 || !p.Spec.Default ||
		strings.Join(p.Spec.MultusNames, ",") != "kube-system/macvlan" || p.Labels["underpool.io/imported"] != "true" {
		t.Errorf("IPPool = %+v %+v", p.Labels, p.Spec)
	}
	ep := w.endpoint("ns", "a")
	wantSame(t, "Endpoint a", addresses(ep), []string{"eth0 " + v1.UnknownSandboxID("uid-a") + " 10.240.1.10/24 imp-v4"})
	if ep.Status.PodUID != "uid-a" || ep.Status.Node != "node-1" || ep.Status.OwnerKind != "ReplicaSet" || ep.Status.OwnerName != "web-1234" {
		t.Errorf("Endpoint a status = %+v", ep.Status)
	}
	if len(ep.Finalizers) != 1 || ep.Finalizers[0] != v1.EndpointProtection || ep.Labels["underpool.io/imported"] != "true" {
		t.Errorf("Endpoint a metadata = %+v", ep.ObjectMeta)
	}
	itf := ep.Status.Interfaces[0]
	if itf.PodUID != "uid-a" || !itf.Created.Time.Equal(now) || itf.IPs[0].Gateway != "10.240.1.1" {
		t.Errorf("Endpoint a attachment = %+v", itf)
	}
}

func TestSpiderEndpointAddsTheAddressesNoPoolStatusMarksWithItsNode(t *testing.T) {
	w := newWorld(t,
		livePod("ns", "c", ""), // not scheduled in the pod object: the SpiderEndpoint names the node
		spiderIPPool("ds4", map[string]any{"subnet": "10.240.2.0/24", "gateway": "10.240.2.1", "vlan": int64(20)},
			map[string]map[string]string{"10.240.2.7": {"interface": "net1", "pod": "ns/c", "podUid": "uid-c"}}),
		spiderIPPool("ds6", map[string]any{"subnet": "fd00:240:2::/64", "ips": []any{"fd00:240:2::10-fd00:240:2::ff"}}, nil),
		spiderEndpoint("ns", "c", "uid-c", "node-2",
			map[string]any{"interface": "net1", "ipv4": "10.240.2.7/24", "ipv4Pool": "ds4", "ipv6": "fd00:240:2::10/64", "ipv6Pool": "ds6"},
			map[string]any{"interface": "net2", "ipv4": "10.9.9.9/24", "ipv4Pool": "missing"},
			map[string]any{"interface": "net3", "ipv4": "not-an-ip", "ipv4Pool": "ds4"}))

	rep := w.mustRun("spiderpool", "sp-")

	wantSame(t, "changes", changes(rep), []string{"create IPPool sp-ds4", "create IPPool sp-ds6", "create Endpoint ns/c"})
	wantSame(t, "skipped", skipped(rep), []string{
		`10.9.9.9 ns/c: its SpiderIPPool "missing" does not exist`,
		"not-an-ip : not an IP address",
	})
	ep := w.endpoint("ns", "c")
	wantSame(t, "Endpoint c", addresses(ep), []string{
		"net1 " + v1.UnknownSandboxID("uid-c") + " 10.240.2.7/24 sp-ds4", "net1 " + v1.UnknownSandboxID("uid-c") + " fd00:240:2::10/64 sp-ds6"})
	if ep.Status.Node != "node-2" {
		t.Errorf("Endpoint c node = %q, want node-2 from the SpiderEndpoint", ep.Status.Node)
	}
	if ip := ep.Status.Interfaces[0].IPs[0]; ip.Vlan != 20 || ip.Gateway != "10.240.2.1" {
		t.Errorf("IPv4 address = %+v, want vlan 20 and gateway 10.240.2.1", ip)
	}
	if s6 := w.state("sp-ds6"); s6.Allocated != "16" || s6.TotalIPCount != 240 {
		t.Errorf("PoolAllocation sp-ds6 state = %+v, want allocated 16 of 240", s6)
	}
}

func TestOldSpiderpoolAllocatedIPsObjectIsReadWithItsNICNamespaceContainerAndNode(t *testing.T) {
	pool := spiderIPPool("old", map[string]any{"subnet": "10.240.5.0/24"}, nil)
	pool.Object["status"] = map[string]any{"allocatedIPs": map[string]any{
		"10.240.5.5/24": map[string]any{"nic": "eth1", "pod": "d", "namespace": "ns", "containerID": "cid-d", "node": "node-9"},
		"not-an-ip":     map[string]any{"nic": "eth1", "pod": "d", "namespace": "ns"},
	}}
	w := newWorld(t, livePod("ns", "d", ""), pool)

	rep := w.mustRun("spiderpool", "")

	wantSame(t, "skipped", skipped(rep), []string{"not-an-ip : not an IP address"})
	ep := w.endpoint("ns", "d")
	wantSame(t, "Endpoint d", addresses(ep), []string{"eth1 cid-d 10.240.5.5/24 old"})
	if ep.Status.Node != "node-9" || ep.Status.PodUID != "uid-d" {
		t.Errorf("Endpoint d status = %+v, want node-9 and the pod's UID", ep.Status)
	}
}

// Spiderpool before 0.8 recorded the pod's sandbox in its SpiderEndpoint: the Endpoint
// then carries that real ID, so the runtime's own DEL matches it by container ID. It is
// the sandbox of the incarnation the SpiderEndpoint names, never another's.
func TestTheSandboxASpiderEndpointRecordsIsTheImportedContainerID(t *testing.T) {
	sandboxOf := func(ns, name, uid, containerID, ip string) *unstructured.Unstructured {
		se := spiderEndpoint(ns, name, uid, "node-1", map[string]any{"interface": "net1", "ipv4": ip, "ipv4Pool": "p"})
		_ = unstructured.SetNestedField(se.Object, containerID, "status", "current", "containerID")
		return se
	}
	w := newWorld(t, livePod("ns", "e", "node-1"), livePod("ns", "f", "node-1"), livePod("ns", "g", "node-1"),
		spiderIPPool("p", map[string]any{"subnet": "10.240.6.0/24"}, map[string]map[string]string{
			"10.240.6.5": {"interface": "net1", "pod": "ns/e", "podUid": "uid-e"},
			"10.240.6.6": {"interface": "net1", "pod": "ns/f", "podUid": "uid-f"},
		}),
		sandboxOf("ns", "e", "uid-e", "cid-e", "10.240.6.5/24"),
		sandboxOf("ns", "f", "uid-f-before", "cid-f-before", "10.240.6.9/24"), // an earlier pod of that name
		sandboxOf("ns", "g", "uid-g", "cid-g", "10.240.6.7/24"))               // only the SpiderEndpoint holds it

	rep := w.mustRun("spiderpool", "")

	wantSame(t, "Endpoint e", addresses(w.endpoint("ns", "e")), []string{"net1 cid-e 10.240.6.5/24 p"})
	wantSame(t, "Endpoint f", addresses(w.endpoint("ns", "f")), []string{"net1 " + v1.UnknownSandboxID("uid-f") + " 10.240.6.6/24 p"})
	wantSame(t, "Endpoint g", addresses(w.endpoint("ns", "g")), []string{"net1 cid-g 10.240.6.7/24 p"})
	wantSame(t, "skipped", skipped(rep), []string{
		"10.240.6.9 ns/f: the address was given to pod UID uid-f-before; pod ns/f is now UID uid-f, another incarnation"})
}

func TestSpiderSubnetsAndReservedIPsBecomeSubnetsAndReservedIPs(t *testing.T) {
	w := newWorld(t,
		spiderSubnet("net", map[string]any{"subnet": "10.240.3.0/24", "gateway": "10.240.3.1", "vlan": int64(7),
			"ips": []any{"10.240.3.10-10.240.3.200"}, "excludeIPs": []any{"10.240.3.50"}}),
		spiderReservedIP("keep", "10.240.3.5", "10.240.3.8-10.240.3.9"),
		spiderReservedIP("empty"))

	rep := w.mustRun("spiderpool", "")

	wantSame(t, "changes", changes(rep), []string{"create Subnet net", "create ReservedIP keep"})
	wantSame(t, "notes", rep.Notes, []string{"SpiderReservedIP empty lists no address: not imported"})
	wantSame(t, "objects", w.underpoolObjects(), []string{"ReservedIP keep", "Subnet net"})
	sub := &v1.Subnet{ObjectMeta: metav1.ObjectMeta{Name: "net"}}
	if err := w.c.Get(t.Context(), objKey(sub), sub); err != nil {
		t.Fatal(err)
	}
	if s := sub.Spec; s.Subnet != "10.240.3.0/24" || s.Gateway != "10.240.3.1" || s.Vlan != 7 ||
		strings.Join(s.IPs, ",") != "10.240.3.10-10.240.3.200" || strings.Join(s.ExcludeIPs, ",") != "10.240.3.50" {
		t.Errorf("Subnet net = %+v", s)
	}
	rip := &v1.ReservedIP{ObjectMeta: metav1.ObjectMeta{Name: "keep"}}
	if err := w.c.Get(t.Context(), objKey(rip), rip); err != nil {
		t.Fatal(err)
	}
	if strings.Join(rip.Spec.IPs, ",") != "10.240.3.5,10.240.3.8-10.240.3.9" {
		t.Errorf("ReservedIP keep = %+v", rip.Spec)
	}
}

func TestSpiderNamespaceAndNodeNamesBecomeSelectorsWithANoteEach(t *testing.T) {
	w := newWorld(t, spiderIPPool("app", map[string]any{"subnet": "10.240.4.0/24", "namespaceName": []any{"team-a"},
		"nodeName": []any{"node-3"}, "disable": true}, nil))

	rep := w.mustRun("spiderpool", "")

	p := w.pool("app")
	if ns := p.Spec.NamespaceAffinity; ns == nil || ns.MatchExpressions[0].Key != "kubernetes.io/metadata.name" || ns.MatchExpressions[0].Values[0] != "team-a" {
		t.Errorf("namespaceAffinity = %+v", ns)
	}
	if n := p.Spec.NodeAffinity; n == nil || n.MatchExpressions[0].Key != "kubernetes.io/hostname" || n.MatchExpressions[0].Values[0] != "node-3" {
		t.Errorf("nodeAffinity = %+v", n)
	}
	if len(rep.Notes) != 3 || !strings.Contains(rep.Notes[0], "spec.namespaceName") || !strings.Contains(rep.Notes[1], "spec.nodeName") ||
		!strings.Contains(rep.Notes[2], "SpiderIPPool app is disabled") {
		t.Errorf("notes = %q, want one on namespaceName, nodeName and disable each", rep.Notes)
	}
}

func TestPeerNamesBecomeValidObjectNamesWithThePrefix(t *testing.T) {
	w := newWorld(t, spiderIPPool("V4_Pool", map[string]any{"subnet": "10.240.9.0/24"}, nil))
	rep := w.mustRun("spiderpool", "Old_")
	wantSame(t, "changes", changes(rep), []string{"create IPPool old-v4-pool"})
}

func TestASpiderIPPoolWhoseSpecDoesNotParseRefusesNamingTheObjectAndField(t *testing.T) {
	w := newWorld(t, spiderIPPool("bad", map[string]any{"subnet": "10.240.1.0/24", "gateway": "10.9.9.1"}, nil))
	_, err := w.run("spiderpool", false, "")
	wantErr(t, err, "SpiderIPPool bad cannot become IPPool bad", "spec.gateway", "fix the peer object first")
	wantSame(t, "writes", w.written(), nil)
}

func TestASpiderIPPoolSpecOfTheWrongShapeRefusesNamingTheObjectAndField(t *testing.T) {
	w := newWorld(t, spiderIPPool("odd", map[string]any{"subnet": "10.240.1.0/24", "ips": "10.240.1.5"}, nil))
	_, err := w.run("spiderpool", false, "")
	wantErr(t, err, "SpiderIPPool odd: spec:")
	wantSame(t, "writes", w.written(), nil)
}

func TestSpiderAllocatedIPsThatAreNotAMapRefuseNamingTheField(t *testing.T) {
	pool := spiderIPPool("odd", map[string]any{"subnet": "10.240.1.0/24"}, nil)
	pool.Object["status"] = map[string]any{"allocatedIPs": `["10.240.1.5"]`}
	w := newWorld(t, pool)
	_, err := w.run("spiderpool", false, "")
	wantErr(t, err, "SpiderIPPool odd status.allocatedIPs is not a map of IP to allocation")
	wantSame(t, "writes", w.written(), nil)
}

func TestSpiderpoolNotInstalledSaysWhatToCheck(t *testing.T) {
	w := newWorld(t)
	_, err := w.run("spiderpool", false, "")
	wantErr(t, err, "found no SpiderSubnet, SpiderIPPool or SpiderReservedIP", "is Spiderpool installed")
}
