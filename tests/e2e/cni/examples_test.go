package cni

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"

	"github.com/underpool/underpool/rdma"
	"github.com/underpool/underpool/tests/e2e"
	"github.com/underpool/underpool/tests/examples"
	"github.com/underpool/underpool/tests/harness"
)

// Each example network runs for real here: its pools are created from ippools.yaml, its
// masters (eth1, eth2) are swapped for throw-away veth parents and its socket for the
// suite's ipamd. The plugins run in a netns standing for the node, with host connectivity
// as the example sets it (by default an underlay-only pod gets a host veth there, never in
// the machine's own netns), and DEL must leave that netns as it was. Each network runs
// alone as net1; each example Pod runs with the cluster network's eth0 (a bridge standing
// in) and its networks in order. Networks needing what this machine lacks (ipvlan, SR-IOV,
// RDMA) are skipped naming it.
func TestConflistExamplesRun(t *testing.T) {
	all, err := examples.Load()
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]examples.Example{}
	vlanPools := map[string]bool{} // a network using one needs 802.1q
	for _, ex := range all {
		if ex.Pool != nil {
			vlanPools[ex.Pool.Name] = ex.Pool.Spec.Vlan != 0
			pool := ex.Pool.DeepCopy()
			if err := e2e.Suite.Client.Create(e2e.Ctx(t), pool); err != nil {
				t.Fatalf("creating example pool %s: %v", pool.Name, err)
			}
			t.Cleanup(func() { _ = e2e.Suite.Client.Delete(context.Background(), pool) })
		}
		if ex.Conflist != nil {
			byName[networkName(t, ex.Conflist)] = ex
		}
	}
	ns := e2e.NewNamespace(t)
	for i, ex := range all {
		switch {
		case ex.Conflist != nil:
			t.Run(ex.Name, func(t *testing.T) {
				skipUnlessMachineHas(t, ex.Conflist, vlanPools)
				node, cni, parents := exampleNode(t)
				before := e2e.ReadNodeState(t, node)
				conf := localise(t, ex.Conflist, parents)
				pod := e2e.NewPodNS(t)
				rt := e2e.RuntimeFor(pod, ns, fmt.Sprintf("example-%d", i), "net1")
				res := addAndCheck(t, cni, conf, rt)
				if hostVethByDefault(t, conf) {
					requireHostVeth(t, res, pod)
				}
				e2e.RequireInvariants(t, e2e.AttachmentsOf(rt))
				if err := cni.Del(e2e.Ctx(t), conf, rt); err != nil {
					t.Fatalf("DEL: %v", err)
				}
				e2e.RequireSameNode(t, "after DEL", before, e2e.ReadNodeState(t, node))
			})
		case ex.Pod != nil:
			t.Run("pod "+ex.Name, func(t *testing.T) {
				for _, n := range ex.Pod {
					net, ok := byName[n.Name]
					if !ok {
						t.Fatalf("no example network %s", n.Name)
					}
					skipUnlessMachineHas(t, net.Conflist, vlanPools)
				}
				node, cni, parents := exampleNode(t)
				pod := e2e.NewPodNS(t)
				name := fmt.Sprintf("example-pod-%d", i)
				overlay := e2e.ClusterNetwork(t, "cni-ex0", "10.250.209.0/24")
				rt0 := e2e.RuntimeFor(pod, ns, name, "eth0")
				if _, err := cni.Add(e2e.Ctx(t), overlay, rt0); err != nil {
					t.Fatalf("cluster network ADD: %v", err)
				}
				// the cluster network's bridge is its own, and stays after its DEL
				before := e2e.ReadNodeState(t, node)
				var dels []func()
				for _, n := range ex.Pod {
					conf := localise(t, byName[n.Name].Conflist, parents)
					rt := e2e.RuntimeFor(pod, ns, name, n.Interface)
					// eth0 holds the IPv4 default and reaches the node: no host veth,
					// even for a dual-stack network taking the IPv6 default
					requireNoHostVeth(t, addAndCheck(t, cni, conf, rt))
					dels = append(dels, func() {
						if err := cni.Del(e2e.Ctx(t), conf, rt); err != nil {
							t.Fatalf("DEL %s: %v", n.Interface, err)
						}
					})
				}
				e2e.RequireContains(t, "pod main table", e2e.RoutesIn(t, pod, 0), "default via 10.250.209.1 dev eth0")
				rules := e2e.RulesIn(t, pod)
				for _, n := range ex.Pod {
					e2e.RequireContains(t, "pod rules", rules, "from "+e2e.AddrOf(t, pod, n.Interface)+"/32 lookup "+fmt.Sprint(100+ifNumber(n.Interface)))
				}
				for i := len(dels) - 1; i >= 0; i-- {
					dels[i]()
				}
				e2e.RequireSameNode(t, "after DEL", before, e2e.ReadNodeState(t, node))
				if err := cni.Del(e2e.Ctx(t), overlay, rt0); err != nil {
					t.Fatalf("cluster network DEL: %v", err)
				}
			})
		}
	}
	e2e.RequireNothingLeft(t, ns)
}

// exampleNode is a netns standing for the node with parents for eth1 and eth2, and the CNI
// runtime of that node.
func exampleNode(t *testing.T) (*harness.NetNS, *harness.CNI, map[string]string) {
	t.Helper()
	node := e2e.NewNodeNS(t)
	// no DAD on the node's links: a link-local address turning from tentative to valid
	// between the two readings of the node's state would look like a change DEL made
	if out, err := node.Run("sysctl", "-w", "net.ipv6.conf.default.accept_dad=0"); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	parents := map[string]string{}
	for _, eth := range []string{"eth1", "eth2"} {
		a, b := harness.UniqueName("exa"), harness.UniqueName("exb")
		v, err := harness.NewVethPairIn(node, a, b)
		if err != nil {
			t.Fatalf("veth parent: %v", err)
		}
		t.Cleanup(func() { _ = v.Close() })
		parents[eth] = a
		for _, end := range []string{a, b} {
			e2e.WaitLinkLocal(t, node, end)
		}
	}
	// the node's own address, which an underlay-only pod reaches through its host veth
	if err := harness.AddAddr(node, parents["eth1"], exampleNodeAddr+"/24"); err != nil {
		t.Fatal(err)
	}
	return node, e2e.NodeCNI(t, node), parents
}

func addAndCheck(t *testing.T, cni *harness.CNI, conf []byte, rt harness.Runtime) types.Result {
	t.Helper()
	res, err := cni.Add(e2e.Ctx(t), conf, rt)
	if err != nil {
		t.Fatalf("ADD %s: %v", rt.IfName, err)
	}
	v4, v6 := e2e.IPsOf(t, res)
	if len(v4)+len(v6) == 0 {
		t.Fatalf("no address on %s", rt.IfName)
	}
	for _, ip := range append(v4, v6...) {
		if ok, err := harness.HasAddr(rt.NetNS, rt.IfName, ip); err != nil || !ok {
			t.Fatalf("%s lacks %s (%v)", rt.IfName, ip, err)
		}
	}
	if err := cni.Check(e2e.Ctx(t), conf, rt); err != nil {
		t.Fatalf("CHECK %s: %v", rt.IfName, err)
	}
	return res
}

// exampleNodeAddr is the node's own address exampleNode gives it.
const exampleNodeAddr = "10.250.208.2"

// hostVethByDefault: the network is the meta-plugin over macvlan or ipvlan, allowed the
// default route, with host connectivity not turned off, so a pod with no other network
// gets a host veth.
func hostVethByDefault(t *testing.T, conflist []byte) bool {
	t.Helper()
	var list struct {
		Plugins []struct {
			Type             string         `json:"type"`
			Delegate         map[string]any `json:"delegate"`
			DefaultRoute     *bool          `json:"defaultRoute"`
			HostConnectivity struct {
				Enabled *bool `json:"enabled"`
			} `json:"hostConnectivity"`
		} `json:"plugins"`
	}
	if err := json.Unmarshal(conflist, &list); err != nil {
		t.Fatal(err)
	}
	for _, p := range list.Plugins {
		kind, _ := p.Delegate["type"].(string)
		if p.Type != "underpool" || (kind != "macvlan" && kind != "ipvlan") {
			continue
		}
		if p.HostConnectivity.Enabled != nil {
			return *p.HostConnectivity.Enabled
		}
		return p.DefaultRoute == nil || *p.DefaultRoute
	}
	return false
}

// requireNoHostVeth: the result lists no node-side interface.
func requireNoHostVeth(t *testing.T, res types.Result) {
	t.Helper()
	if nodeSide := nodeInterfaces(t, res); len(nodeSide) != 0 {
		t.Fatalf("a host veth %v next to an eth0 that reaches the node", nodeSide)
	}
}

// nodeInterfaces names the interfaces of a result that are not in the pod.
func nodeInterfaces(t *testing.T, res types.Result) []string {
	t.Helper()
	r, err := current.GetResult(res)
	if err != nil {
		t.Fatal(err)
	}
	var nodeSide []string
	for _, itf := range r.Interfaces {
		if itf.Sandbox == "" {
			nodeSide = append(nodeSide, itf.Name)
		}
	}
	return nodeSide
}

// requireHostVeth: the result lists a node-side interface, and through it the pod
// reaches the node's own address, which its macvlan alone never would.
func requireHostVeth(t *testing.T, res types.Result, pod *harness.NetNS) {
	t.Helper()
	nodeSide := nodeInterfaces(t, res)
	if len(nodeSide) != 1 {
		t.Fatalf("want one host veth on the node (host connectivity is on by default), the result lists %v", nodeSide)
	}
	if err := harness.Ping(pod, exampleNodeAddr, 3); err != nil {
		t.Fatalf("the pod cannot reach its node through host veth %s: %v", nodeSide[0], err)
	}
}

// skipUnlessMachineHas skips a network whose delegate, RDMA mode, VLAN (its own or its
// pools', vlanPools) or bond this machine lacks, naming where it runs instead.
func skipUnlessMachineHas(t *testing.T, conflist []byte, vlanPools map[string]bool) {
	t.Helper()
	needs, err := examples.NeedsOf(conflist, vlanPools)
	if err != nil {
		t.Fatal(err)
	}
	if needs.Ipvlan {
		if err := e2e.KernelHas("ipvlan"); err != nil {
			t.Skipf("skipped: needs ipvlan, which this kernel cannot create (%v); the example runs in the VM (tests/kernel: TestConflistExamplesThisKernelLacksRun)", err)
		}
	}
	if needs.Sriov {
		if vfs, _ := filepath.Glob("/sys/class/net/*/device/virtfn0"); len(vfs) == 0 {
			t.Skip("skipped: needs sriov: no NIC with SR-IOV VFs here, and no emulated NIC has them (sriov-cni is not served by the module proxy either); host-device stands in for a VF in TestNetworkHostDeviceAsVF, the sriov delegate config is proved by chain's TestDelegateConfExactly")
		}
		if _, err := os.Stat(filepath.Join(harness.CacheBinDir(), "sriov")); err != nil {
			t.Skip("skipped: needs sriov: sriov-cni is not installed in " + harness.CacheBinDir())
		}
	}
	if needs.Vlan {
		if err := e2e.KernelHas("vlan id 100"); err != nil {
			t.Skipf("skipped: needs 802.1q (a VLAN from the network or its pools), which this kernel cannot create (%v); the example runs in the VM (tests/kernel: TestConflistExamplesThisKernelLacksRun)", err)
		}
	}
	if needs.Bond {
		if err := e2e.KernelHas("bond"); err != nil {
			t.Skipf("skipped: needs bonding, which this kernel cannot create (%v); the example runs in the VM (tests/kernel: TestConflistExamplesThisKernelLacksRun)", err)
		}
	}
	if needs.RDMAMode != "" {
		if _, err := rdma.Devices(); err != nil {
			t.Skipf("skipped: needs rdma (mode %s): %v; a shared-mode example runs in the VM on soft-RoCE (tests/kernel: TestConflistExamplesThisKernelLacksRun)", needs.RDMAMode, err)
		}
	}
}

func networkName(t *testing.T, conflist []byte) string {
	t.Helper()
	name, err := examples.NetworkName(conflist)
	if err != nil {
		t.Fatal(err)
	}
	return name
}

func ifNumber(ifName string) int {
	var n int
	_, _ = fmt.Sscanf(strings.TrimPrefix(ifName, "net"), "%d", &n)
	return n
}

// localise points an example at this machine: masters eth1 and eth2 become veth parents,
// the ipamd socket the suite's. Everything else, host connectivity included, is the
// example's own.
func localise(t *testing.T, conflist []byte, parents map[string]string) []byte {
	t.Helper()
	for eth, parent := range parents {
		conflist = bytes.ReplaceAll(conflist, []byte(`"`+eth+`"`), []byte(`"`+parent+`"`))
	}
	var list map[string]any
	if err := json.Unmarshal(conflist, &list); err != nil {
		t.Fatal(err)
	}
	for _, p := range list["plugins"].([]any) {
		plugin := p.(map[string]any)
		if ipam, ok := plugin["ipam"].(map[string]any); ok {
			ipam["socket"] = e2e.Suite.Ipamd.Options.Socket
		}
	}
	return e2e.MustJSON(t, list)
}
