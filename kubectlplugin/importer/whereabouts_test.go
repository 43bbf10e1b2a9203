package importer_test

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/kubectlplugin/importer"
)

func TestWhereaboutsIPPoolsBecomeIPPoolsAndEndpointsWithTheirContainerIDs(t *testing.T) {
	done := livePod("ns", "done", "node-4")
	done.Status.Phase = corev1.PodSucceeded
	w := newWorld(t, livePod("ns", "wa", "node-4"), done,
		wherePool("ns", "10.240.6.0-24", "10.240.6.0/24", map[string]any{
			"5":   whereAlloc("cid-wa", "ns/wa", "net1"),
			"6":   whereAlloc("cid-gone", "ns/gone", "net1"),
			"7":   whereAlloc("cid-done", "ns/done", "net1"),
			"99":  whereAlloc("cid-wa2", "ns/wa", "net2"),
			"x":   whereAlloc("cid-x", "ns/wa", "net3"),
			"300": whereAlloc("cid-far", "ns/wa", "net4"),
		}),
		wherePool("ns", "fd00-240-6---64", "fd00:240:6::/64", map[string]any{"5": whereAlloc("cid-wa", "ns/wa", "net1")}))

	rep := w.mustRun("whereabouts", "wb-")

	wantSame(t, "changes", changes(rep), []string{"create IPPool wb-10.240.6.0-24", "create IPPool wb-fd00-240-6---64", "create Endpoint ns/wa"})
	wantSame(t, "skipped", skipped(rep), []string{
		"300 ns/wa: offset 300 lies outside range 10.240.6.0/24",
		"x ns/wa: the allocation key is not an offset",
		"10.240.6.6 ns/gone: the pod no longer exists",
		"10.240.6.7 ns/done: the pod has finished (phase Succeeded): its sandbox is gone",
	})
	ep := w.endpoint("ns", "wa")
	wantSame(t, "Endpoint wa", addresses(ep), []string{
		"net1 cid-wa 10.240.6.5/24 wb-10.240.6.0-24", "net1 cid-wa fd00:240:6::5/64 wb-fd00-240-6---64", "net2 cid-wa2 10.240.6.99/24 wb-10.240.6.0-24"})
	if ep.Status.PodUID != "uid-wa" || ep.Status.Interfaces[0].PodUID != "uid-wa" || ep.Status.Node != "node-4" {
		t.Errorf("Endpoint wa status = %+v", ep.Status)
	}
	if s := w.state("wb-10.240.6.0-24"); s.Allocated != "5,99" || s.AllocatedIPCount != 2 || s.TotalIPCount != 254 {
		t.Errorf("PoolAllocation wb-10.240.6.0-24 state = %+v", s)
	}
	if len(rep.Notes) != 1 || !strings.Contains(rep.Notes[0], "range_start, range_end and exclude") {
		t.Errorf("notes = %q, want the one on the NAD's range", rep.Notes)
	}
}

func TestWhereaboutsOffsetsCountFromTheRangeAddressAsWritten(t *testing.T) {
	w := newWorld(t, livePod("ns", "p", "node-1"),
		wherePool("ns", "r", "10.240.8.4/24", map[string]any{"2": whereAlloc("cid-p", "ns/p", "")}))

	rep := w.mustRun("whereabouts", "")

	wantSame(t, "Endpoint p", addresses(w.endpoint("ns", "p")), []string{"net1 cid-p 10.240.8.6/24 r"})
	if p := w.pool("r"); p.Spec.Subnet != "10.240.8.0/24" {
		t.Errorf("IPPool r subnet = %s, want the range masked", p.Spec.Subnet)
	}
	if len(rep.Notes) != 2 || !strings.Contains(rep.Notes[1], "record no interface: they were imported as net1") {
		t.Errorf("notes = %q, want one on the allocation without an interface", rep.Notes)
	}
}

func TestAnAddressRecordedTwiceIsKeptForItsFirstHolder(t *testing.T) {
	w := newWorld(t, livePod("ns", "x", "node-1"), livePod("ns", "y", "node-1"),
		wherePool("ns", "r", "10.240.8.0/24", map[string]any{
			"05": whereAlloc("cid-x", "ns/x", "net1"),
			"5":  whereAlloc("cid-y", "ns/y", "net1"),
		}))

	rep := w.mustRun("whereabouts", "")

	wantSame(t, "changes", changes(rep), []string{"create IPPool r", "create Endpoint ns/x"})
	wantSame(t, "skipped", skipped(rep), []string{"10.240.8.5 ns/y: the address is recorded twice; kept for ns/x"})
}

func TestOverlappingRangeReservationsWithoutAnAllocationAreSkippedAsLeftovers(t *testing.T) {
	w := newWorld(t, livePod("ns", "wa", "node-1"),
		wherePool("ns", "r4", "10.240.6.0/24", map[string]any{"5": whereAlloc("cid-wa", "ns/wa", "net1")}),
		wherePool("ns", "r6", "fd00:240:6::/64", map[string]any{"9": whereAlloc("cid-wa", "ns/wa", "net1")}),
		whereReservation("ns", "10.240.6.5", "cid-wa", "ns/wa"),
		whereReservation("ns", "fd00-240-6--9", "cid-wa", "ns/wa"),
		whereReservation("ns", "mynet-10.240.6.9", "cid-old", "ns/old"),
		whereReservation("ns", "mynet-fd00-240-6--a", "cid-old", "ns/old"),
		whereReservation("ns", "not-an-address", "cid-odd", "ns/odd"))

	rep := w.mustRun("whereabouts", "")

	wantSame(t, "skipped", skipped(rep), []string{
		"10.240.6.9 ns/old: no whereabouts IPPool allocates it (a leftover reservation)",
		"fd00:240:6::a ns/old: no whereabouts IPPool allocates it (a leftover reservation)",
		"not-an-address ns/odd: its name is not an address",
	})
	wantSame(t, "changes", changes(rep), []string{"create IPPool r4", "create IPPool r6", "create Endpoint ns/wa"})
}

func TestAWhereaboutsRangeThatIsNotACIDRRefusesNamingSpecRange(t *testing.T) {
	w := newWorld(t, wherePool("ns", "bad", "10.240.6.0", nil))
	_, err := w.run("whereabouts", false, "")
	wantErr(t, err, "whereabouts IPPool ns/bad: spec.range \"10.240.6.0\" is not a CIDR")
	wantSame(t, "writes", w.written(), nil)
}

func TestWhereaboutsPoolsOfOneNameInTwoNamespacesRefuseNamingBoth(t *testing.T) {
	w := newWorld(t, wherePool("a", "net", "10.240.6.0/24", nil), wherePool("b", "net", "10.240.7.0/24", nil))
	_, err := w.run("whereabouts", false, "")
	wantErr(t, err, "whereabouts IPPool a/net and whereabouts IPPool b/net would both become IPPool net", "--prefix")
	wantSame(t, "writes", w.written(), nil)
}

func TestWhereaboutsNotInstalledSaysWhatToCheck(t *testing.T) {
	w := newWorld(t)
	_, err := w.run("whereabouts", false, "")
	wantErr(t, err, "found no whereabouts IPPool", "is whereabouts installed")
}

func TestAnUnknownSourceIsRefusedNamingTheKnownOnes(t *testing.T) {
	w := newWorld(t)
	_, err := w.run("calico", false, "")
	wantErr(t, err, `unknown source "calico"`, "import spiderpool", "import whereabouts")
}

func nad(ns, name, config string) *unstructured.Unstructured {
	return peerObject("k8s.cni.cncf.io/v1", "NetworkAttachmentDefinition", ns, name, map[string]any{"config": config}, nil)
}

// whereabouts keeps a range's gateway and routes in the ipam config of the NADs that use
// it: each imported pool takes those of its family, and its Endpoints hand the gateway on.
func TestWhereaboutsPoolsTakeTheGatewayAndRoutesOfTheNADsOfTheirRange(t *testing.T) {
	w := newWorld(t, livePod("ns", "wa", "node-1"),
		wherePool("kube-system", "10.240.6.0-24", "10.240.6.0/24", map[string]any{"5": whereAlloc("cid-wa", "ns/wa", "net1")}),
		wherePool("kube-system", "fd00-240-6---64", "fd00:240:6::/64", nil),
		wherePool("kube-system", "10.240.7.0-24", "10.240.7.0/24", nil),
		nad("ns", "dual", `{"cniVersion":"1.0.0","name":"dual","plugins":[{"type":"macvlan","master":"eth0",
			"ipam":{"type":"whereabouts","ipRanges":[{"range":"10.240.6.0/24"},{"range":"fd00:240:6::/64"}],"gateway":"10.240.6.1",
			"routes":[{"dst":"10.0.0.0/8","gw":"10.240.6.254"},{"dst":"192.168.0.0/16"},{"dst":"fd00:99::/64"}]}}]}`),
		nad("other", "same", `{"type":"macvlan","ipam":{"type":"whereabouts","range":"10.240.6.10-10.240.6.50/24","gateway":"10.240.6.1",
			"routes":[{"dst":"10.0.0.0/8","gw":"10.240.6.254"},{"dst":"192.168.0.0/16"}]}}`),
		nad("ns", "host-local", `{"type":"macvlan","ipam":{"type":"host-local","subnet":"10.240.7.0/24","gateway":"10.240.7.1"}}`))

	rep := w.mustRun("whereabouts", "")

	p4, p6, p7 := w.pool("10.240.6.0-24"), w.pool("fd00-240-6---64"), w.pool("10.240.7.0-24")
	// a whereabouts route without gw leads through the gateway; an underpool one would be on-link
	if p4.Spec.Gateway != "10.240.6.1" || len(p4.Spec.Routes) != 2 || p4.Spec.Routes[0] != (v1.Route{Dst: "10.0.0.0/8", Gw: "10.240.6.254"}) ||
		p4.Spec.Routes[1] != (v1.Route{Dst: "192.168.0.0/16", Gw: "10.240.6.1"}) {
		t.Errorf("IPv4 pool spec = %+v, want the NADs' gateway and IPv4 routes, the gateway written into the one without gw", p4.Spec)
	}
	if p6.Spec.Gateway != "" || len(p6.Spec.Routes) != 1 || p6.Spec.Routes[0] != (v1.Route{Dst: "fd00:99::/64"}) {
		t.Errorf("IPv6 pool spec = %+v, want no gateway (the NAD's is IPv4) and the IPv6 route, on-link as without a gateway", p6.Spec)
	}
	if p7.Spec.Gateway != "" || len(p7.Spec.Routes) != 0 {
		t.Errorf("pool of a range no whereabouts NAD uses = %+v, want nothing from a host-local NAD", p7.Spec)
	}
	if ip := w.endpoint("ns", "wa").Status.Interfaces[0].IPs[0]; ip.Gateway != "10.240.6.1" {
		t.Errorf("imported address = %+v, want gateway 10.240.6.1", ip)
	}
	wantNote(t, rep, `IPPool 10.240.6.0-24 takes gateway "10.240.6.1" and 2 route(s) from NetworkAttachmentDefinition ns/dual, other/same`)
}

func TestNADsThatGiveARangeDifferentGatewaysGiveItNoneAndSaySo(t *testing.T) {
	w := newWorld(t,
		wherePool("kube-system", "10.240.6.0-24", "10.240.6.0/24", nil),
		nad("a", "one", `{"type":"macvlan","ipam":{"type":"whereabouts","range":"10.240.6.0/24","gateway":"10.240.6.1"}}`),
		nad("b", "two", `{"type":"macvlan","ipam":{"type":"whereabouts","range":"10.240.6.0/24","gateway":"10.240.6.254"}}`),
		nad("c", "broken", `{"type":`),
		nad("d", "badroute", `{"type":"macvlan","ipam":{"type":"whereabouts","range":"10.240.9.0/24","routes":[{"dst":"10.0.0.0/8","gw":"fd00::1"}]}}`))

	rep := w.mustRun("whereabouts", "")

	if p := w.pool("10.240.6.0-24"); p.Spec.Gateway != "" {
		t.Errorf("pool gateway = %q, want none when the NADs disagree", p.Spec.Gateway)
	}
	wantNote(t, rep, "give different gateways or routes (a/one and b/two): IPPool 10.240.6.0-24 gets none")
	wantNote(t, rep, "NetworkAttachmentDefinition c/broken: spec.config is not CNI JSON")
	wantNote(t, rep, "NetworkAttachmentDefinition d/badroute: ipam routes[0] gw fd00::1 and dst 10.0.0.0/8 are of two families: not imported")
}

// A NAD that names its network (network_name) uses the IPPools whereabouts names after it,
// not another network's pool of the same range.
func TestANamedWhereaboutsNetworkGivesItsGatewayOnlyToItsOwnPools(t *testing.T) {
	unnamed := newWorld(t,
		wherePool("kube-system", "10.240.6.0-24", "10.240.6.0/24", nil),
		nad("ns", "blue", `{"type":"macvlan","ipam":{"type":"whereabouts","range":"10.240.6.0/24","network_name":"blue","gateway":"10.240.6.1"}}`))
	unnamed.mustRun("whereabouts", "")
	if p := unnamed.pool("10.240.6.0-24"); p.Spec.Gateway != "" {
		t.Errorf("the unnamed network's pool took blue's gateway: %+v", p.Spec)
	}
	named := newWorld(t,
		wherePool("kube-system", "blue-10.240.6.0-24", "10.240.6.0/24", nil),
		nad("ns", "blue", `{"type":"macvlan","ipam":{"type":"whereabouts","range":"10.240.6.0/24","network_name":"blue","gateway":"10.240.6.1"}}`))
	named.mustRun("whereabouts", "")
	if p := named.pool("blue-10.240.6.0-24"); p.Spec.Gateway != "10.240.6.1" {
		t.Errorf("blue's pool gateway = %q, want 10.240.6.1", p.Spec.Gateway)
	}
}

// An IPPool entry without a sandbox ID takes the one its address's reservation records
// for the same pod; where neither records one, the attachment says the sandbox is unknown.
func TestAWhereaboutsAllocationWithoutASandboxTakesItsReservations(t *testing.T) {
	w := newWorld(t, livePod("ns", "a", "node-1"), livePod("ns", "b", "node-1"),
		wherePool("ns", "r", "10.240.6.0/24", map[string]any{
			"5": whereAlloc("", "ns/a", "net1"),
			"6": whereAlloc("", "ns/b", "net1"),
		}),
		whereReservation("ns", "10.240.6.5", "cid-a", "ns/a"),
		whereReservation("ns", "10.240.6.6", "cid-someone", "ns/other"))

	w.mustRun("whereabouts", "")

	wantSame(t, "Endpoint a", addresses(w.endpoint("ns", "a")), []string{"net1 cid-a 10.240.6.5/24 r"})
	wantSame(t, "Endpoint b", addresses(w.endpoint("ns", "b")), []string{"net1 " + v1.UnknownSandboxID("uid-b") + " 10.240.6.6/24 r"})
}

func wantNote(t *testing.T, rep *importer.Report, part string) {
	t.Helper()
	for _, n := range rep.Notes {
		if strings.Contains(n, part) {
			return
		}
	}
	t.Errorf("no note says %q; notes:\n%s", part, strings.Join(rep.Notes, "\n"))
}
