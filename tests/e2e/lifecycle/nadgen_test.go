package lifecycle

import (
	"fmt"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/tests/e2e"
)

// An UnderlayNetwork is all a user writes: the controller generates the NAD in the
// namespace it names, a Deployment's pod naming that NAD in k8s.v1.cni.cncf.io/networks
// gets its address through multus and the kubelet stand-in; editing the network (another
// master, another pool) rewrites the NAD, and the pods made after get the new pool's
// address; deleting the network removes the NAD (the garbage collector follows its
// ownerReference) while running pods keep their addresses until they go. Invariants
// after every phase.
func TestAnUnderlayNetworkGivesPodsTheirNetworkThroughTheNADItGenerates(t *testing.T) {
	v4a, _, _ := e2e.NextSubnet()
	v4b, _, _ := e2e.NextSubnet()
	a, b := strings.TrimSuffix(v4a, "0/24"), strings.TrimSuffix(v4b, "0/24")
	poolA := e2e.NewPool(t, v1.IPPoolSpec{Subnet: v4a, Gateway: a + "1"}).Name
	poolB := e2e.NewPool(t, v1.IPPoolSpec{Subnet: v4b, Gateway: b + "1"}).Name
	lc := newLifecycle(t, lifecycleOptions{})
	net := e2e.NewUnderlayNetwork(t, v1.UnderlayNetworkSpec{
		// the nodes' uplink: the stand-ins run the plugins in each node's netns, where host
		// connectivity keeps its default
		Namespaces: []string{lc.ns}, Macvlan: &v1.MacvlanNetwork{Master: nodeUplink},
		IPAM: v1.NetworkIPAM{IPv4Pools: []string{poolA}}})

	ready := e2e.WaitNetworkReady(t, net.Name, metav1.ConditionTrue, v1.NetworkSynced)
	if got := ready.Status.NetworkAttachmentDefinitions; len(got) != 1 || got[0] != lc.ns+"/"+net.Name {
		t.Fatalf("status lists %v, want %s/%s", got, lc.ns, net.Name)
	}
	nad, err := e2e.GetNAD(t, lc.ns, net.Name)
	if err != nil {
		t.Fatalf("the generated NAD: %v", err)
	}
	if ref := metav1.GetControllerOf(nad); ref == nil || ref.UID != ready.UID || nad.GetLabels()[v1.NetworkLabel] != net.Name {
		t.Fatalf("NAD controller %+v, labels %v: want the network", ref, nad.GetLabels())
	}
	onNet := map[string]string{"k8s.v1.cni.cncf.io/networks": net.Name}
	dep := lc.deployment("gen", 1, onNet)
	lc.create(dep)
	first := onlyPod(t, lc.waitReady("gen", 1))
	addrA := lc.addresses()[first.Name]
	if !strings.HasPrefix(addrA, a) || !e2e.PoolHolds(t, poolA, addrA) {
		t.Fatalf("%s holds %q on net1, want an address of %s", first.Name, addrA, poolA)
	}
	if got := lc.sandboxAddresses(lc.node(first), first.Name); len(got) != 1 || got[0] != addrA {
		t.Fatalf("the sandbox has %v on net1, want %s", got, addrA)
	}
	lc.requireInvariants(poolA)

	// another master and another pool: the NAD follows, new pods use it
	master2 := lc.uplink("eth2")
	lc.updateNetwork(net.Name, func(s *v1.UnderlayNetworkSpec) { s.Macvlan.Master, s.IPAM.IPv4Pools = master2, []string{poolB} })
	e2e.WaitNetworkReady(t, net.Name, metav1.ConditionTrue, v1.NetworkSynced)
	lc.eventually("the NAD to name "+poolB, time.Minute, func() (bool, string) {
		nad, err := e2e.GetNAD(t, lc.ns, net.Name)
		if err != nil {
			return false, err.Error()
		}
		return strings.Contains(e2e.NADConfigOf(nad), `"ipv4Pools":["`+poolB+`"]`), e2e.NADConfigOf(nad)
	})
	lc.rollingRestart(dep)
	var second string
	lc.eventually("a pod made after the edit with an address of "+poolB, 2*time.Minute, func() (bool, string) {
		pods := lc.readyPods("gen")
		addrs := lc.addresses()
		if len(pods) != 1 || pods[0].Name == first.Name || len(lc.pods("gen")) != 1 {
			return false, fmt.Sprintf("%d ready, %d pods", len(pods), len(lc.pods("gen")))
		}
		second = pods[0].Name
		return strings.HasPrefix(addrs[second], b), fmt.Sprintf("%s holds %q", second, addrs[second])
	})
	lc.requireInvariants(poolA, poolB)

	// the network goes, its NAD with it; the running pod keeps its address
	if err := e2e.Suite.Client.Delete(e2e.Ctx(t), net); err != nil {
		t.Fatal(err)
	}
	lc.eventually("the NAD to go with its network", 2*time.Minute, func() (bool, string) {
		_, err := e2e.GetNAD(t, lc.ns, net.Name)
		return e2e.IsNotFound(err), fmt.Sprintf("get: %v", err)
	})
	if addr := lc.addresses()[second]; !strings.HasPrefix(addr, b) || !e2e.PoolHolds(t, poolB, addr) {
		t.Fatalf("%s holds %q after its NAD went, want its address of %s", second, addr, poolB)
	}
	lc.requireInvariants(poolA, poolB)
	lc.deleteAll(dep)
	lc.requireNothingLeft(poolA, poolB)
}

// updateNetwork changes an UnderlayNetwork's spec, retrying on conflicts (the controller
// writes its status meanwhile).
func (lc *lifecycle) updateNetwork(name string, change func(*v1.UnderlayNetworkSpec)) {
	lc.t.Helper()
	lc.eventually("updating UnderlayNetwork "+name, 30*time.Second, func() (bool, string) {
		net := &v1.UnderlayNetwork{}
		if err := e2e.Suite.Client.Get(e2e.Ctx(lc.t), client.ObjectKey{Name: name}, net); err != nil {
			return false, err.Error()
		}
		change(&net.Spec)
		err := e2e.Suite.Client.Update(e2e.Ctx(lc.t), net)
		return err == nil, fmt.Sprintf("update: %v", err)
	})
}
