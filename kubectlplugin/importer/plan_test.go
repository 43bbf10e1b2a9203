package importer_test

import (
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/underpool/underpool/api/v1"
)

// spiderCluster is one of every Spiderpool kind: a subnet, a reserved IP, a pool and a
// live pod's address in it, recorded by its SpiderEndpoint as well; and the underpool
// objects a test starts with.
func spiderCluster(t *testing.T, existing ...client.Object) *world {
	return newWorld(t, append(existing, livePod("ns", "a", "node-1"),
		spiderSubnet("net", map[string]any{"subnet": "10.240.1.0/24", "gateway": "10.240.1.1"}),
		spiderReservedIP("keep", "10.240.1.5"),
		spiderIPPool("v4", map[string]any{"subnet": "10.240.1.0/24", "ips": []any{"10.240.1.10-10.240.1.50"}, "gateway": "10.240.1.1"},
			map[string]map[string]string{"10.240.1.10": {"interface": "eth0", "pod": "ns/a", "podUid": "uid-a"}}),
		spiderEndpoint("ns", "a", "uid-a", "node-1", map[string]any{"interface": "eth0", "ipv4": "10.240.1.10/24", "ipv4Pool": "v4"}))...)
}

func TestADryRunReportsWhatAnImportWritesAndWritesNothing(t *testing.T) {
	w := spiderCluster(t)

	dry, err := w.run("spiderpool", true, "")
	if err != nil {
		t.Fatal(err)
	}
	wantSame(t, "writes", w.written(), nil)
	wantSame(t, "objects", w.underpoolObjects(), nil)
	if !dry.DryRun {
		t.Error("the report does not say it is a dry run")
	}

	rep := w.mustRun("spiderpool", "")
	wantSame(t, "changes", changes(rep), changes(dry))
	wantSame(t, "changes", changes(rep), []string{"create Subnet net", "create ReservedIP keep", "create IPPool v4", "create Endpoint ns/a"})
	wantSame(t, "writes", w.written(), []string{"create Subnet net", "create ReservedIP keep",
		"create IPPool v4", "create PoolAllocation v4", "patch IPPool v4", "create Endpoint ns/a"})
}

func TestASecondImportChangesNothing(t *testing.T) {
	w := spiderCluster(t)
	w.mustRun("spiderpool", "")
	before := w.underpoolObjects()
	writes := len(w.written())

	again := w.mustRun("spiderpool", "")

	wantSame(t, "changes", changes(again), []string{"unchanged Subnet net", "unchanged ReservedIP keep", "unchanged IPPool v4", "unchanged Endpoint ns/a"})
	wantSame(t, "writes of the second import", w.written()[writes:], nil)
	wantSame(t, "objects", w.underpoolObjects(), before)
}

func TestAnExistingIPPoolOfAnotherSpecRefusesTheWholeImport(t *testing.T) {
	w := newWorld(t, ipPool("clash", v1.IPPoolSpec{Subnet: "10.240.4.0/24"}),
		spiderReservedIP("clash-keep", "10.240.4.5"),
		spiderIPPool("clash", map[string]any{"subnet": "10.240.4.0/24", "ips": []any{"10.240.4.10-10.240.4.20"}}, nil))

	_, err := w.run("spiderpool", false, "")
	wantErr(t, err, "SpiderIPPool clash would become IPPool clash, but IPPool clash exists with another spec", "--prefix")
	wantSame(t, "writes", w.written(), nil)

	// with a prefix the names differ, but the addresses overlap
	_, err = w.run("spiderpool", false, "new-")
	wantErr(t, err, "SpiderIPPool clash would become IPPool new-clash, whose addresses overlap IPPool clash (first shared address 10.240.4.10)")
	wantSame(t, "writes", w.written(), nil)
}

func TestTwoPeerPoolsThatShareAddressesRefuseNamingBoth(t *testing.T) {
	w := newWorld(t,
		spiderIPPool("one", map[string]any{"subnet": "10.240.4.0/24", "ips": []any{"10.240.4.10-10.240.4.20"}}, nil),
		spiderIPPool("two", map[string]any{"subnet": "10.240.4.0/24", "ips": []any{"10.240.4.20-10.240.4.30"}}, nil))
	_, err := w.run("spiderpool", false, "")
	wantErr(t, err, "SpiderIPPool one and SpiderIPPool two overlap (first shared address 10.240.4.20)")
	wantSame(t, "writes", w.written(), nil)
}

func TestAnExistingSubnetOrReservedIPOfAnotherSpecRefusesAndAnIdenticalOneIsLeftAlone(t *testing.T) {
	subnet := &v1.Subnet{ObjectMeta: metav1.ObjectMeta{Name: "net"}, Spec: v1.SubnetSpec{Subnet: "10.240.1.0/24", Gateway: "10.240.1.1"}}
	reserved := &v1.ReservedIP{ObjectMeta: metav1.ObjectMeta{Name: "keep"}, Spec: v1.ReservedIPSpec{IPs: []string{"10.240.1.5"}}}
	rep := spiderCluster(t, subnet, reserved).mustRun("spiderpool", "")
	wantSame(t, "changes", changes(rep), []string{"unchanged Subnet net", "unchanged ReservedIP keep", "create IPPool v4", "create Endpoint ns/a"})

	otherSubnet := subnet.DeepCopy()
	otherSubnet.Spec.Gateway = "10.240.1.254"
	w := spiderCluster(t, otherSubnet)
	_, err := w.run("spiderpool", false, "")
	wantErr(t, err, "SpiderSubnet net would become Subnet net, but Subnet net exists with another spec", "--prefix")
	wantSame(t, "writes", w.written(), nil)

	otherReserved := reserved.DeepCopy()
	otherReserved.Spec.IPs = []string{"10.240.1.6"}
	w = spiderCluster(t, otherReserved)
	_, err = w.run("spiderpool", false, "")
	wantErr(t, err, "SpiderReservedIP keep would become ReservedIP keep, but ReservedIP keep exists with other addresses", "--prefix")
	wantSame(t, "writes", w.written(), nil)
}

func TestAnExistingIdenticalPoolGainsOnlyTheAddressesItLacks(t *testing.T) {
	r := ipPool("r", v1.IPPoolSpec{Subnet: "10.240.7.0/24"})
	mine := allocation(r, "3")
	mine.State.Cursor = "17" // ipamd's: kept as it is
	w := newWorld(t, livePod("ns", "wb", "node-5"), r, mine,
		wherePool("ns", "r", "10.240.7.0/24", map[string]any{"4": whereAlloc("cid-wb", "ns/wb", "net1")}))

	rep := w.mustRun("whereabouts", "")

	wantSame(t, "changes", changes(rep), []string{"mark IPPool r", "create Endpoint ns/wb"})
	if d := rep.Changes[0].Detail; d != "state.allocated gains 1: 10.240.7.4" {
		t.Errorf("mark detail = %q", d)
	}
	if s := w.state("r"); s.Allocated != "3-4" || s.AllocatedIPCount != 2 || s.Cursor != "17" {
		t.Errorf("PoolAllocation r state = %+v, want 3-4 (2) and ipamd's cursor 17", s)
	}
}

func TestAnExistingPoolMarkingTheAddressForAnotherPodRefuses(t *testing.T) {
	r := ipPool("r", v1.IPPoolSpec{Subnet: "10.240.7.0/24"})
	w := newWorld(t, livePod("ns", "wc", "node-5"), r, allocation(r, "3"),
		wherePool("ns", "r", "10.240.7.0/24", map[string]any{"3": whereAlloc("cid-wc", "ns/wc", "net1")}))
	_, err := w.run("whereabouts", true, "")
	wantErr(t, err, "IPPool r already marks 10.240.7.3 allocated, but not for pod ns/wc", "kubectl underpool who 10.240.7.3")

	// a pool an import created adopts a mark nobody records (a re-run), never one an
	// Endpoint records for another pod
	imported := ipPool("r", v1.IPPoolSpec{Subnet: "10.240.7.0/24"})
	imported.Labels = map[string]string{"underpool.io/imported": "true"}
	other := &v1.Endpoint{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "wd"}, Status: v1.EndpointStatus{PodUID: "uid-wd",
		Interfaces: []v1.EndpointInterface{{ContainerID: "cid-wd", Interface: "net1", IPs: []v1.EndpointIP{{Address: "10.240.7.3/24", Pool: "r"}}}}}}
	w = newWorld(t, livePod("ns", "wc", "node-5"), imported, allocation(imported, "3"), other,
		wherePool("ns", "r", "10.240.7.0/24", map[string]any{"3": whereAlloc("cid-wc", "ns/wc", "net1")}))
	_, err = w.run("whereabouts", true, "")
	wantErr(t, err, "IPPool r already marks 10.240.7.3 allocated, but not for pod ns/wc that the peer gave it to (Endpoint ns/wd holds it)")
}

func TestAnEndpointHoldingThePeersAddressesIsLeftAloneAndOneHoldingOthersRefuses(t *testing.T) {
	held := &v1.Endpoint{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "wb"}, Status: v1.EndpointStatus{PodUID: "uid-wb",
		Interfaces: []v1.EndpointInterface{{ContainerID: "cid-wb", Interface: "net1", IPs: []v1.EndpointIP{{Address: "10.240.7.4/24", Pool: "r"}}}}}}
	r := ipPool("r", v1.IPPoolSpec{Subnet: "10.240.7.0/24"})
	peer := []client.Object{livePod("ns", "wb", "node-5"), r, allocation(r, "4"),
		wherePool("ns", "r", "10.240.7.0/24", map[string]any{"4": whereAlloc("cid-wb", "ns/wb", "net1")})}

	rep := newWorld(t, append(peer, held)...).mustRun("whereabouts", "")
	wantSame(t, "changes", changes(rep), []string{"unchanged IPPool r", "unchanged Endpoint ns/wb"})

	other := held.DeepCopy()
	other.Status.Interfaces[0].IPs[0].Address = "10.240.7.8/24"
	w := newWorld(t, append(peer, other)...)
	_, err := w.run("whereabouts", false, "")
	wantErr(t, err, "pod ns/wb already has an underpool Endpoint, recording other addresses (net1 10.240.7.8/24 (r)) than the peer's (net1 10.240.7.4/24 (r))")
	wantSame(t, "writes", w.written(), nil)
}

// The API server refuses a Subnet or ReservedIP that does not parse (CEL rules, the
// webhook); the fake client does not, so these tests see what the import writes itself.

func TestASpiderSubnetThatDoesNotParseRefusesTheImportBeforeAnythingIsWritten(t *testing.T) {
	w := spiderCluster(t, spiderSubnet("bad", map[string]any{"subnet": "10.240.9.0/24", "gateway": "10.250.0.1"}))
	_, err := w.run("spiderpool", false, "")
	wantErr(t, err, "SpiderSubnet bad cannot become Subnet bad", "spec.gateway", "fix the peer object first")
	wantSame(t, "writes", w.written(), nil)
}

func TestASpiderReservedIPEntryThatDoesNotParseRefusesTheImportBeforeAnythingIsWritten(t *testing.T) {
	w := spiderCluster(t, spiderReservedIP("bad", "10.240.1.6", "10.240.1.9-10.240.1.7"))
	_, err := w.run("spiderpool", false, "")
	wantErr(t, err, "SpiderReservedIP bad cannot become ReservedIP bad", "spec.ips[1]", "reversed", "fix the peer object first")
	wantSame(t, "writes", w.written(), nil)
}

func TestAnExistingPoolWhoseStateIsPastItsSubnetRefusesNamingStateAllocated(t *testing.T) {
	r := ipPool("r", v1.IPPoolSpec{Subnet: "10.240.7.0/24"})
	w := newWorld(t, livePod("ns", "wb", "node-5"), r, allocation(r, "3,4000"),
		wherePool("ns", "r", "10.240.7.0/24", map[string]any{"4": whereAlloc("cid-wb", "ns/wb", "net1")}))
	_, err := w.run("whereabouts", false, "")
	wantErr(t, err, `PoolAllocation r state.allocated "3,4000" does not parse`, "outside subnet 10.240.7.0/24", "fix it or delete the pool")
	wantSame(t, "writes", w.written(), nil)
}

// Each imported address names the pool incarnation that marks it, as ipamd's records do:
// its release then never frees an address in a pool deleted and made again under the
// same name.
func TestImportedAddressesNameTheirPoolsUID(t *testing.T) {
	existing := ipPool("r7", v1.IPPoolSpec{Subnet: "10.240.7.0/24"})
	w := newWorld(t, livePod("ns", "a", "node-1"), existing,
		wherePool("ns", "r6", "10.240.6.0/24", map[string]any{"5": whereAlloc("cid-a", "ns/a", "net1")}),
		wherePool("ns", "r7", "10.240.7.0/24", map[string]any{"5": whereAlloc("cid-a", "ns/a", "net2")}))

	w.mustRun("whereabouts", "")

	created := w.pool("r6")
	if created.UID == "" {
		t.Fatal("the fake API gave the created pool no UID")
	}
	for _, itf := range w.endpoint("ns", "a").Status.Interfaces {
		want := map[string]string{"r6": string(created.UID), "r7": "uid-pool-r7"}[itf.IPs[0].Pool]
		if itf.IPs[0].PoolUID != want {
			t.Errorf("%s address %+v, want pool UID %s", itf.Interface, itf.IPs[0], want)
		}
	}
}
