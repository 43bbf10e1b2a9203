package guest

import (
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/vishvananda/netlink"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/tests/e2e"
	"github.com/underpool/underpool/tests/harness"
)

// VLAN sub-interfaces from IPPool.vlan and the network's vlan, through the meta-plugin on a
// kernel with 802.1q: ADD puts the pod's link on <master>.<vlan>, made when missing (marked
// with the ifalias "underpool"), shared by every pod on it and removed by the DEL of the
// last one; an operator's is used as is and kept.

const testVlan = 100

// taggedSegment is the node's uplink with the far end's gateway on VLAN testVlan: the far
// end carries the gateway address on its VLAN interface and an untagged host in the same
// subnet on the bare link, which a pod on the VLAN must not reach.
type taggedSegment struct {
	node, gateway *harness.NetNS
	master        string // in node, untagged, no address
	gatewayAddr   string // on far.<vlan>
	untaggedAddr  string // on far itself
}

// newTaggedSegment makes it for 10.250.x.0/24: the gateway .1 on VLAN testVlan, the
// untagged host .3. Names are short so that <name>.100 fits the kernel's 15 characters.
func newTaggedSegment(t *testing.T, x int32) taggedSegment {
	t.Helper()
	s := taggedSegment{node: newNetNS(t, "node"), gateway: newNetNS(t, "gw"), master: harness.UniqueName("v"),
		gatewayAddr: fmt.Sprintf("10.250.%d.1", x), untaggedAddr: fmt.Sprintf("10.250.%d.3", x)}
	far := harness.UniqueName("f")
	v, err := harness.NewVethPairIn(s.node, s.master, far)
	if err != nil {
		t.Fatalf("segment veth: %v", err)
	}
	t.Cleanup(func() { _ = v.Close() })
	if err := v.MoveB(s.gateway); err != nil {
		t.Fatal(err)
	}
	farVlan := tagFarEnd(t, s.gateway, far)
	for _, a := range []struct{ link, addr string }{{farVlan, s.gatewayAddr}, {far, s.untaggedAddr}} {
		if err := harness.AddAddr(s.gateway, a.link, a.addr+"/24"); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

// tagFarEnd gives link in the gateway's netns its VLAN testVlan interface, and makes the
// netns answer ARP only on the link that holds the address asked for: by default Linux
// answers for any of its addresses on any link, and the untagged host would answer on the
// VLAN.
func tagFarEnd(t *testing.T, gw *harness.NetNS, link string) string {
	t.Helper()
	name := fmt.Sprintf("%s.%d", link, testVlan)
	for _, cmd := range [][]string{
		{"ip", "link", "add", "link", link, "name", name, "type", "vlan", "id", fmt.Sprint(testVlan)},
		{"ip", "link", "set", name, "up"},
		{"sysctl", "-w", "net.ipv4.conf.all.arp_ignore=1"},
	} {
		if out, err := gw.Run(cmd[0], cmd[1:]...); err != nil {
			t.Fatalf("%v: %v: %s", cmd, err, out)
		}
	}
	return name
}

// vlanConf is the meta-plugin on delegate (macvlan or ipvlan) hanging off master, with no
// host veth (the node is not what these tests reach), plus extra top-level fields.
func vlanConf(t *testing.T, delegate, master, pool string, extra map[string]any) []byte {
	d := map[string]any{"type": delegate, "master": master, "mode": map[string]string{"macvlan": "bridge", "ipvlan": "l2"}[delegate]}
	if master == "" {
		delete(d, "master")
	}
	fields := map[string]any{"hostConnectivity": map[string]any{"enabled": false}}
	for k, v := range extra {
		fields[k] = v
	}
	return netConf{Delegate: d, IPv4Pools: []string{pool}, Extra: fields}.conflist(t)
}

// vlanPod is one pod attached by a vlan test.
type vlanPod struct {
	ns *harness.NetNS
	rt harness.Runtime
	ip string
}

// addPods attaches n pods through conf, concurrently when parallel, and fails on any error.
func addPods(t *testing.T, cni *harness.CNI, conf []byte, ns string, n int, parallel bool) []vlanPod {
	t.Helper()
	pods := make([]vlanPod, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range pods {
		pods[i].ns = newNetNS(t, "pod")
		pods[i].rt = runtimeFor(pods[i].ns, ns, fmt.Sprintf("p%d", i), "net1")
		add := func(i int) {
			defer wg.Done()
			res, err := cni.Add(ctx(t), conf, pods[i].rt)
			if err == nil {
				pods[i].ip, err = resultIPv4(res)
			}
			errs[i] = err
		}
		wg.Add(1)
		if parallel {
			go add(i)
		} else {
			add(i)
		}
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("ADD of pod %d: %v", i, err)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	return pods
}

func runtimes(pods []vlanPod) []harness.Runtime {
	out := make([]harness.Runtime, 0, len(pods))
	for _, p := range pods {
		out = append(out, p.rt)
	}
	return out
}

// parentOf names the node link the pod's link hangs off.
func parentOf(t *testing.T, pod, node *harness.NetNS, ifName string) string {
	t.Helper()
	var index int
	if err := pod.Do(func() error {
		l, err := netlink.LinkByName(ifName)
		if err == nil {
			index = l.Attrs().ParentIndex
		}
		return err
	}); err != nil {
		t.Fatalf("%s in the pod: %v", ifName, err)
	}
	var name string
	if err := node.Do(func() error {
		l, err := netlink.LinkByIndex(index)
		if err == nil {
			name = l.Attrs().Name
		}
		return err
	}); err != nil {
		t.Fatalf("the parent (index %d) of the pod's %s on the node: %v", index, ifName, err)
	}
	return name
}

// vlanLinks describes the node's VLAN interfaces as "name id=100 on=master alias=underpool mtu=1500".
func vlanLinks(t *testing.T, node *harness.NetNS) []string {
	t.Helper()
	var out []string
	err := node.Do(func() error {
		links, err := netlink.LinkList()
		for _, l := range links {
			if v, ok := l.(*netlink.Vlan); ok {
				parent, _ := netlink.LinkByIndex(v.ParentIndex)
				out = append(out, fmt.Sprintf("%s id=%d on=%s alias=%s mtu=%d up=%v", v.Name, v.VlanId, parent.Attrs().Name,
					v.Alias, v.MTU, v.Flags&1 != 0))
			}
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func requireVlanLinks(t *testing.T, what string, node *harness.NetNS, want ...string) {
	t.Helper()
	if got := vlanLinks(t, node); strings.Join(got, "; ") != strings.Join(want, "; ") {
		t.Fatalf("%s: the node's VLAN interfaces are\n  %s\nwant\n  %s", what, strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

// requireOnVlan checks that every pod's link hangs off link, that every pod reaches the
// gateway on the VLAN and the other pods, and none reaches the untagged host.
func requireOnVlan(t *testing.T, pods []vlanPod, node *harness.NetNS, link, gateway, untagged string) {
	t.Helper()
	for _, p := range pods {
		if got := parentOf(t, p.ns, node, "net1"); got != link {
			t.Errorf("pod %s's net1 hangs off %s, want %s", p.rt.PodName, got, link)
		}
		if err := harness.Ping(p.ns, gateway, 3); err != nil {
			t.Errorf("pod %s to the gateway on VLAN %d: %v", p.rt.PodName, testVlan, err)
		}
	}
	if len(pods) > 1 {
		if err := harness.Ping(pods[0].ns, pods[1].ip, 3); err != nil {
			t.Errorf("pod to pod on the VLAN: %v", err)
		}
	}
	if err := harness.Ping(pods[0].ns, untagged, 2); err == nil {
		t.Errorf("pod %s reached %s, a host on the untagged segment: its frames are not tagged", pods[0].rt.PodName, untagged)
	}
}

func delPods(t *testing.T, cni *harness.CNI, conf []byte, pods []vlanPod) {
	t.Helper()
	for _, p := range pods {
		if err := cni.Del(ctx(t), conf, p.rt); err != nil {
			t.Fatalf("DEL of pod %s: %v", p.rt.PodName, err)
		}
	}
}

// Two pods of a pool with vlan 100, through macvlan and through ipvlan: ADD makes
// <master>.100 (the master's MTU, up, marked), both pods hang off it and reach the gateway
// on VLAN 100 and each other, not the untagged host; it stays while one pod is left and
// goes with the last DEL, leaving the node's links as they were.
func TestVlanOfThePoolPutsPodsOnMasterDotVlanSharedAndRemovedWithTheLast(t *testing.T) {
	for _, delegate := range []string{"macvlan", "ipvlan"} {
		t.Run(delegate, func(t *testing.T) {
			v4net, _, x := e2e.NextSubnet()
			seg := newTaggedSegment(t, x)
			pool := newPool(t, v1.IPPoolSpec{Subnet: v4net, Gateway: seg.gatewayAddr, Vlan: testVlan,
				ExcludeIPs: []string{seg.untaggedAddr}})
			conf := vlanConf(t, delegate, seg.master, pool.Name, nil)
			cni := nodeCNI(t, seg.node)
			ns := newNamespace(t)
			before := linksIn(t, seg.node)
			pods := addPods(t, cni, conf, ns, 2, false)
			vlanIf := seg.master + ".100"
			requireVlanLinks(t, "after ADD", seg.node, vlanIf+" id=100 on="+seg.master+" alias=underpool mtu=1500 up=true")
			requireOnVlan(t, pods, seg.node, vlanIf, seg.gatewayAddr, seg.untaggedAddr)
			requireInvariants(t, runtimes(pods), pool.Name)
			for _, p := range pods {
				if err := cni.Check(ctx(t), conf, p.rt); err != nil {
					t.Errorf("CHECK of pod %s: %v", p.rt.PodName, err)
				}
			}
			delPods(t, cni, conf, pods[:1])
			requireVlanLinks(t, "after the first DEL", seg.node, vlanIf+" id=100 on="+seg.master+" alias=underpool mtu=1500 up=true")
			if err := harness.Ping(pods[1].ns, seg.gatewayAddr, 3); err != nil {
				t.Errorf("the pod left lost its VLAN when the other went: %v", err)
			}
			delPods(t, cni, conf, pods[1:])
			requireVlanLinks(t, "after the last DEL", seg.node)
			if after := linksIn(t, seg.node); strings.Join(after, ",") != strings.Join(before, ",") {
				t.Errorf("the node's links were %v before ADD and are %v after DEL", before, after)
			}
			e2e.RequireNothingLeft(t, ns, pool.Name)
		})
	}
}

// A VLAN interface the operator made (under the usual name or another) is used as it is
// and kept after the last DEL; the VLAN comes from the network's vlan here, the pool
// naming none.
func TestVlanInterfaceTheOperatorMadeIsUsedAndKept(t *testing.T) {
	for _, name := range []string{"usual", "other"} {
		t.Run(name, func(t *testing.T) {
			v4net, _, x := e2e.NextSubnet()
			seg := newTaggedSegment(t, x)
			vlanIf := seg.master + ".100"
			if name == "other" {
				vlanIf = fmt.Sprintf("tag%d", x)
			}
			for _, cmd := range [][]string{
				{"ip", "link", "add", "link", seg.master, "name", vlanIf, "type", "vlan", "id", "100"},
				{"ip", "link", "set", vlanIf, "up"},
			} {
				if out, err := seg.node.Run(cmd[0], cmd[1:]...); err != nil {
					t.Fatalf("%v: %s", err, out)
				}
			}
			pool := newPool(t, v1.IPPoolSpec{Subnet: v4net, Gateway: seg.gatewayAddr, ExcludeIPs: []string{seg.untaggedAddr}})
			conf := vlanConf(t, "macvlan", seg.master, pool.Name, map[string]any{"vlan": testVlan})
			cni := nodeCNI(t, seg.node)
			ns := newNamespace(t)
			pods := addPods(t, cni, conf, ns, 1, false)
			want := vlanIf + " id=100 on=" + seg.master + " alias= mtu=1500 up=true"
			requireVlanLinks(t, "after ADD", seg.node, want)
			requireOnVlan(t, pods, seg.node, vlanIf, seg.gatewayAddr, seg.untaggedAddr)
			requireInvariants(t, runtimes(pods), pool.Name)
			delPods(t, cni, conf, pods)
			requireVlanLinks(t, "after the last DEL", seg.node, want)
			e2e.RequireNothingLeft(t, ns, pool.Name)
		})
	}
}

// Eight ADDs at once onto a VLAN nobody made yet all succeed and leave exactly one VLAN
// interface, which all eight pods share; eight DELs at once remove it.
func TestConcurrentAddsOntoANewVlanAllSucceedWithOneInterface(t *testing.T) {
	v4net, _, x := e2e.NextSubnet()
	seg := newTaggedSegment(t, x)
	pool := newPool(t, v1.IPPoolSpec{Subnet: v4net, Gateway: seg.gatewayAddr, Vlan: testVlan, ExcludeIPs: []string{seg.untaggedAddr}})
	conf := vlanConf(t, "macvlan", seg.master, pool.Name, nil)
	cni := nodeCNI(t, seg.node)
	ns := newNamespace(t)
	pods := addPods(t, cni, conf, ns, 8, true)
	vlanIf := seg.master + ".100"
	requireVlanLinks(t, "after 8 concurrent ADDs", seg.node, vlanIf+" id=100 on="+seg.master+" alias=underpool mtu=1500 up=true")
	for _, p := range pods {
		if got := parentOf(t, p.ns, seg.node, "net1"); got != vlanIf {
			t.Errorf("pod %s's net1 hangs off %s, want %s", p.rt.PodName, got, vlanIf)
		}
	}
	if err := harness.Ping(pods[7].ns, seg.gatewayAddr, 3); err != nil {
		t.Errorf("a pod to the gateway on the VLAN: %v", err)
	}
	requireInvariants(t, runtimes(pods), pool.Name)
	var wg sync.WaitGroup
	for _, p := range pods {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := cni.Del(ctx(t), conf, p.rt); err != nil {
				t.Errorf("DEL of pod %s: %v", p.rt.PodName, err)
			}
		}()
	}
	wg.Wait()
	requireVlanLinks(t, "after 8 concurrent DELs", seg.node)
	e2e.RequireNothingLeft(t, ns, pool.Name)
}

// An ADD that fails once the VLAN interface is made (the delegate refuses an MTU above its
// master's) takes it back with the rest; pools on another VLAN than the network's fail ADD
// naming both, before anything is made.
func TestAFailedAddTakesBackTheVlanInterfaceItMade(t *testing.T) {
	v4net, _, x := e2e.NextSubnet()
	seg := newTaggedSegment(t, x)
	pool := newPool(t, v1.IPPoolSpec{Subnet: v4net, Gateway: seg.gatewayAddr, Vlan: testVlan, ExcludeIPs: []string{seg.untaggedAddr}})
	cni := nodeCNI(t, seg.node)
	ns := newNamespace(t)
	for _, c := range []struct {
		name string
		conf []byte
		want string
	}{
		{"delegate fails", netConf{Delegate: map[string]any{"type": "macvlan", "master": seg.master, "mode": "bridge", "mtu": 9000},
			IPv4Pools: []string{pool.Name}, Extra: map[string]any{"hostConnectivity": map[string]any{"enabled": false}}}.conflist(t), "MTU"},
		{"VLANs differ", vlanConf(t, "macvlan", seg.master, pool.Name, map[string]any{"vlan": 200}), "has vlan 100 but the network config's vlan is 200"},
	} {
		rt := runtimeFor(newNetNS(t, "pod"), ns, "fails", "net1")
		_, err := cni.Add(ctx(t), c.conf, rt)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Fatalf("%s: ADD error %v, want one naming %q", c.name, err, c.want)
		}
		requireVlanLinks(t, c.name+": after the failed ADD", seg.node)
		if err := cni.Del(ctx(t), c.conf, rt); err != nil { // as the runtime does after a failed ADD
			t.Fatalf("%s: DEL after the failed ADD: %v", c.name, err)
		}
	}
	e2e.RequireNothingLeft(t, ns, pool.Name)
}

// resultIPv4 is the result's first IPv4 address (firstIPv4 for a goroutine, which must
// not call t.Fatal).
func resultIPv4(r types.Result) (string, error) {
	res, err := current.GetResult(r)
	if err != nil {
		return "", err
	}
	for _, ip := range res.IPs {
		if ip.Address.IP.To4() != nil {
			return ip.Address.IP.String(), nil
		}
	}
	return "", fmt.Errorf("no IPv4 address in %v", r)
}
