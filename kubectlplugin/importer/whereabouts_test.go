package importer_test

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
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
	if p := w.pool("wb-10.240.6.0-24"); p.Status.Allocated != "5,99" || p.Status.AllocatedIPCount != 2 || p.Status.TotalIPCount != 254 {
		t.Errorf("IPPool wb-10.240.6.0-24 status = %+v", p.Status)
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
