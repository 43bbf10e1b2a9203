package guest

import (
	"bytes"
	"context"
	"fmt"
	"testing"

	"github.com/underpool/underpool/tests/e2e"
	"github.com/underpool/underpool/tests/examples"
	"github.com/underpool/underpool/tests/harness"
)

// The conflist examples the machine's own kernel cannot run (ipvlan, VLAN and bond uplinks,
// RDMA shared mode) run here, as TestConflistExamplesRun runs the others there: their pools
// from ippools.yaml, their masters (eth1, eth2, eth3) swapped for throw-away veths in a netns
// standing for the node (RDMA: in the VM's own netns, where sysfs shows the soft-RoCE
// device made on it), ADD, CHECK, the invariants, DEL, nothing left. sriov examples need VFs
// no emulated NIC has: they are the one kind that runs nowhere here, and the test says so.
func TestConflistExamplesThisKernelLacksRun(t *testing.T) {
	all, err := examples.Load()
	if err != nil {
		t.Fatal(err)
	}
	vlanPools := map[string]bool{}
	var pools []string
	for _, ex := range all {
		if ex.Pool == nil {
			continue
		}
		vlanPools[ex.Pool.Name] = ex.Pool.Spec.Vlan != 0
		pool := ex.Pool.DeepCopy()
		if err := suite.client.Create(ctx(t), pool); err != nil {
			t.Fatalf("creating example pool %s: %v", pool.Name, err)
		}
		pools = append(pools, pool.Name)
		t.Cleanup(func() { _ = suite.client.Delete(context.Background(), pool) })
	}
	ns := newNamespace(t)
	ran := 0
	for i, ex := range all {
		if ex.Conflist == nil {
			continue
		}
		needs, err := examples.NeedsOf(ex.Conflist, vlanPools)
		if err != nil {
			t.Fatalf("%s: %v", ex.Name, err)
		}
		if !needs.Any() {
			continue // runs on the machine's own kernel (TestConflistExamplesRun)
		}
		t.Run(ex.Name, func(t *testing.T) {
			if needs.Sriov {
				t.Skip("skipped: needs SR-IOV VFs, which no emulated NIC has (its delegate config is proved by chain's TestDelegateConfExactly)")
			}
			if needs.RDMAMode != "" && needs.RDMAMode != "shared" {
				t.Skipf("skipped: rdma.mode %s moves the device into the pod, which soft-RoCE cannot (TestRdmaExclusiveModeWithADeviceThatCannotMoveFailsAddAndLeavesNothing)", needs.RDMAMode)
			}
			cni, masters := exampleNode(t, needs.RDMAMode != "")
			conf := withMasters(ex.Conflist, masters)
			rt := runtimeFor(newNetNS(t, "pod"), ns, fmt.Sprintf("example-%d", i), "net1")
			res, err := cni.Add(ctx(t), conf, rt)
			if err != nil {
				t.Fatalf("ADD: %v", err)
			}
			if ip := e2e.FirstIP(t, res, true); ip == "" {
				t.Fatal("no IPv4 address")
			}
			if err := cni.Check(ctx(t), conf, rt); err != nil {
				t.Fatalf("CHECK: %v", err)
			}
			requireInvariants(t, []harness.Runtime{rt}, pools...)
			if err := cni.Del(ctx(t), conf, rt); err != nil {
				t.Fatalf("DEL: %v", err)
			}
		})
		ran++
	}
	if ran < 3 {
		t.Fatalf("only %d examples needed this kernel: the examples lost their ipvlan, VLAN or RDMA networks?", ran)
	}
	e2e.RequireNothingLeft(t, ns, pools...)
}

// exampleNode gives the examples' masters eth1, eth2 and eth3 throw-away veths in a netns
// standing for the node (with an address of its own on another link, which an underlay-only
// pod reaches through its host veth), or, for RDMA, in the VM's own netns with a soft-RoCE
// device on eth1.
func exampleNode(t *testing.T, rdma bool) (*harness.CNI, map[string]string) {
	t.Helper()
	masters := map[string]string{}
	if rdma {
		for _, eth := range []string{"eth1", "eth2", "eth3"} {
			masters[eth] = newRootMaster(t)
		}
		newRxe(t, masters["eth1"])
		return &harness.CNI{BinDirs: []string{BinDir}, CacheDir: t.TempDir()}, masters
	}
	node := newNetNS(t, "node")
	for _, eth := range []string{"eth0", "eth1", "eth2", "eth3"} {
		a, b := harness.UniqueName("exa"), harness.UniqueName("exb")
		v, err := harness.NewVethPairIn(node, a, b)
		if err != nil {
			t.Fatalf("veth for %s: %v", eth, err)
		}
		t.Cleanup(func() { _ = v.Close() })
		masters[eth] = a
	}
	if err := harness.AddAddr(node, masters["eth0"], "10.250.208.2/24"); err != nil {
		t.Fatal(err)
	}
	delete(masters, "eth0")
	return nodeCNI(t, node), masters
}

// withMasters points an example's masters (and bond slaves) at this test's links.
func withMasters(conflist []byte, masters map[string]string) []byte {
	for eth, link := range masters {
		conflist = bytes.ReplaceAll(conflist, []byte(`"`+eth+`"`), []byte(`"`+link+`"`))
		conflist = bytes.ReplaceAll(conflist, []byte("primary="+eth), []byte("primary="+link))
	}
	return conflist
}
