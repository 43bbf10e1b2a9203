package network

import (
	"fmt"
	"testing"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/tests/e2e"
	"github.com/underpool/underpool/tests/harness"
)

// host-device standing in for an SR-IOV VF: a veth end in the node's netns is moved into
// the pod with its address from the pool (as sriov-cni moves a VF), reaches the segment,
// and goes back to the node on DEL. Runs in a netns standing for the node, so links
// move out of and back into that namespace, never the machine's own.
func TestNetworkHostDeviceAsVF(t *testing.T) {
	v4net, _, x := e2e.NextSubnet()
	pool := e2e.NewPool(t, v1.IPPoolSpec{Subnet: v4net, Gateway: fmt.Sprintf("10.250.%d.1", x)})
	node := e2e.NewPodNS(t)
	peer := e2e.NewPeer(t, node, fmt.Sprintf("10.250.%d.1/24", x), "")
	vf := peer.Parent // the node-side end plays the VF
	cni := e2e.NodeCNI(t, node)
	conf := e2e.NetConf{Delegate: map[string]any{"type": "host-device", "device": vf}, IPv4Pools: []string{pool.Name}}.Conflist(t)
	ns := e2e.NewNamespace(t)
	pod := e2e.NewPodNS(t)
	rt := e2e.RuntimeFor(pod, ns, "vfpod", "net1")
	res, err := cni.Add(e2e.Ctx(t), conf, rt)
	if err != nil {
		t.Fatalf("ADD: %v", err)
	}
	ip := e2e.FirstIP(t, res, true)
	if ok, err := harness.HasAddr(pod.Path(), "net1", e2e.ParseIP(t, ip)); err != nil || !ok {
		t.Fatalf("the VF is not net1 with %s in the pod (%v)", ip, err)
	}
	if e2e.HasLink(t, node, vf) {
		t.Fatalf("%s is still in the node netns after ADD", vf)
	}
	if err := harness.Ping(pod, fmt.Sprintf("10.250.%d.1", x), 3); err != nil {
		t.Fatalf("the pod cannot reach its segment through the VF: %v", err)
	}
	e2e.RequireInvariants(t, e2e.AttachmentsOf(rt), pool.Name)
	if err := cni.Check(e2e.Ctx(t), conf, rt); err != nil {
		t.Fatalf("CHECK: %v", err)
	}
	if err := cni.Del(e2e.Ctx(t), conf, rt); err != nil {
		t.Fatalf("DEL: %v", err)
	}
	if !e2e.HasLink(t, node, vf) {
		t.Fatalf("%s did not come back to the node netns on DEL", vf)
	}
	if e2e.HasLink(t, pod, "net1") {
		t.Fatal("net1 is still in the pod after DEL")
	}
	e2e.RequireNothingLeft(t, ns, pool.Name)
}

// ipvlan in each mode, end to end where the kernel has it (CONFIG_IPVLAN); its exact
// delegate config is proved by chain's TestDelegateConfExactly everywhere.
func TestNetworkIpvlanModes(t *testing.T) {
	if err := e2e.KernelHas("ipvlan"); err != nil {
		t.Skipf("skipped: this kernel cannot create ipvlan links (%v); every ipvlan mode runs through the meta-plugin in the VM instead: make test's tests/kernel step, TestDataPlaneInAVM/TestIpvlanAsDelegate*", err)
	}
	for _, mode := range []string{"l2", "l3", "l3s"} {
		t.Run(mode, func(t *testing.T) {
			v4net, _, _ := e2e.NextSubnet()
			pool := e2e.NewPool(t, v1.IPPoolSpec{Subnet: v4net})
			conf := e2e.NetConf{Delegate: map[string]any{"type": "ipvlan", "master": e2e.NewParent(t), "mode": mode},
				IPv4Pools: []string{pool.Name}}.Conflist(t)
			ns := e2e.NewNamespace(t)
			rt := e2e.RuntimeFor(e2e.NewPodNS(t), ns, "ipvl-"+mode, "net1")
			if _, err := e2e.Suite.CNI.Add(e2e.Ctx(t), conf, rt); err != nil {
				t.Fatalf("ADD: %v", err)
			}
			e2e.RequireInvariants(t, e2e.AttachmentsOf(rt), pool.Name)
			if err := e2e.Suite.CNI.Del(e2e.Ctx(t), conf, rt); err != nil {
				t.Fatalf("DEL: %v", err)
			}
			e2e.RequireNothingLeft(t, ns, pool.Name)
		})
	}
}
