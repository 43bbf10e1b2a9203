package guest

import (
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/tests/e2e"
	"github.com/underpool/underpool/tests/harness"
)

// bondSegment is two veth pairs from the node to the far end, where they are the ports of
// a broadcast bond (it hears whichever the node's bond sends on) with the gateway on its
// VLAN testVlan and an untagged host on the bond itself.
type bondSegment struct {
	node, gateway *harness.NetNS
	slaves        []string // in node, free: the meta-plugin's bond takes them
	gatewayAddr   string
	untaggedAddr  string
}

func newBondSegment(t *testing.T, x int32) bondSegment {
	t.Helper()
	s := bondSegment{node: newNetNS(t, "node"), gateway: newNetNS(t, "gw"),
		gatewayAddr: fmt.Sprintf("10.250.%d.1", x), untaggedAddr: fmt.Sprintf("10.250.%d.3", x)}
	farBond := harness.UniqueName("g")
	if out, err := s.gateway.Run("ip", "link", "add", farBond, "type", "bond", "mode", "broadcast"); err != nil {
		t.Fatalf("far bond: %v: %s", err, out)
	}
	for range 2 {
		slave, far := harness.UniqueName("s"), harness.UniqueName("f")
		v, err := harness.NewVethPairIn(s.node, slave, far)
		if err != nil {
			t.Fatalf("segment veth: %v", err)
		}
		t.Cleanup(func() { _ = v.Close() })
		if err := v.MoveB(s.gateway); err != nil {
			t.Fatal(err)
		}
		for _, cmd := range [][]string{{"ip", "link", "set", far, "down"}, {"ip", "link", "set", far, "master", farBond}, {"ip", "link", "set", far, "up"}} {
			if out, err := s.gateway.Run(cmd[0], cmd[1:]...); err != nil {
				t.Fatalf("%v: %v: %s", cmd, err, out)
			}
		}
		s.slaves = append(s.slaves, slave)
	}
	if out, err := s.gateway.Run("ip", "link", "set", farBond, "up"); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	farVlan := tagFarEnd(t, s.gateway, farBond)
	for _, a := range []struct{ link, addr string }{{farVlan, s.gatewayAddr}, {farBond, s.untaggedAddr}} {
		if err := harness.AddAddr(s.gateway, a.link, a.addr+"/24"); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

// bondState describes a node link as "bond alias=underpool mode=active-backup slaves=a,b"
// or, for a slave, "master=<bond> up=true"; "" when it is gone.
func bondState(t *testing.T, node *harness.NetNS, name string) string {
	t.Helper()
	var out string
	err := node.Do(func() error {
		l, err := netlink.LinkByName(name)
		if err != nil {
			return nil // gone
		}
		if b, ok := l.(*netlink.Bond); ok {
			links, err := netlink.LinkList()
			var slaves []string
			for _, s := range links {
				if s.Attrs().MasterIndex == b.Index {
					slaves = append(slaves, s.Attrs().Name)
				}
			}
			out = fmt.Sprintf("bond alias=%s mode=%s slaves=%s", b.Alias, b.Mode, strings.Join(slaves, ","))
			return err
		}
		master := ""
		if m := l.Attrs().MasterIndex; m != 0 {
			ml, _ := netlink.LinkByIndex(m)
			master = ml.Attrs().Name
		}
		out = fmt.Sprintf("master=%s up=%v", master, l.Attrs().Flags&net.FlagUp != 0)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// A bond of two veths named in the config, with the pool's VLAN on top: ADD makes the bond
// from the slaves (active-backup, marked) and <bond>.100 on it; both pods hang off the VLAN
// interface and reach the gateway through the bond, not the untagged host. Slaves that are
// missing, in another bond or addressed fail ADD naming bond.slaves and leave nothing. The
// last DEL removes the VLAN interface and the bond and gives the slaves back, free and up.
func TestBondOfTwoVethsWithTheVlanOnTopIsMadeSharedAndRemoved(t *testing.T) {
	v4net, _, x := e2e.NextSubnet()
	seg := newBondSegment(t, x)
	pool := newPool(t, v1.IPPoolSpec{Subnet: v4net, Gateway: seg.gatewayAddr, Vlan: testVlan, ExcludeIPs: []string{seg.untaggedAddr}})
	bond := harness.UniqueName("b")
	bondConf := func(name string, slaves ...string) []byte {
		return vlanConf(t, "macvlan", "", pool.Name, map[string]any{"bond": map[string]any{
			"name": name, "mode": "active-backup", "slaves": slaves, "options": "miimon=100;primary=" + slaves[0]}})
	}
	conf := bondConf(bond, seg.slaves...)
	cni := nodeCNI(t, seg.node)
	ns := newNamespace(t)
	before := linksIn(t, seg.node)
	pods := addPods(t, cni, conf, ns, 2, false)
	if got, want := bondState(t, seg.node, bond), "bond alias=underpool mode=active-backup slaves="+strings.Join(seg.slaves, ","); got != want {
		t.Fatalf("the node's %s: %q, want %q", bond, got, want)
	}
	vlanIf := bond + ".100"
	requireVlanLinks(t, "after ADD", seg.node, vlanIf+" id=100 on="+bond+" alias=underpool mtu=1500 up=true")
	requireOnVlan(t, pods, seg.node, vlanIf, seg.gatewayAddr, seg.untaggedAddr)
	requireInvariants(t, runtimes(pods), pool.Name)

	addressed, peer := harness.UniqueName("a"), harness.UniqueName("z")
	v, err := harness.NewVethPairIn(seg.node, addressed, peer)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = v.Close() })
	if err := harness.AddAddr(seg.node, addressed, "192.0.2.9/24"); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name   string
		slaves []string
		want   string
	}{
		{"missing", []string{"nosuchnic"}, "bond.slaves[0] nosuchnic is not on the node"},
		{"enslaved elsewhere", []string{seg.slaves[1]}, fmt.Sprintf("bond.slaves[0] %s is already enslaved to %s", seg.slaves[1], bond)},
		{"addressed", []string{addressed}, fmt.Sprintf("bond.slaves[0] %s carries 192.0.2.9/24", addressed)},
	} {
		bad := bondConf(harness.UniqueName("c"), c.slaves...)
		rt := runtimeFor(newNetNS(t, "pod"), ns, "bad", "net1")
		if _, err := cni.Add(ctx(t), bad, rt); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("slave %s: ADD error %v, want one naming %q", c.name, err, c.want)
		}
		if err := cni.Del(ctx(t), bad, rt); err != nil {
			t.Errorf("slave %s: DEL after the failed ADD: %v", c.name, err)
		}
	}
	requireInvariants(t, runtimes(pods), pool.Name)

	delPods(t, cni, conf, pods[:1])
	if got := bondState(t, seg.node, bond); !strings.HasPrefix(got, "bond ") {
		t.Fatalf("the first DEL took %s away: %q", bond, got)
	}
	delPods(t, cni, conf, pods[1:])
	requireVlanLinks(t, "after the last DEL", seg.node)
	if got := bondState(t, seg.node, bond); got != "" {
		t.Errorf("the last DEL left %s: %q", bond, got)
	}
	for _, s := range seg.slaves {
		if got := bondState(t, seg.node, s); got != "master= up=true" {
			t.Errorf("slave %s after the bond went: %q, want free and up", s, got)
		}
	}
	want := append(before, addressed, peer)
	slices.Sort(want)
	if after := linksIn(t, seg.node); strings.Join(after, ",") != strings.Join(want, ",") {
		t.Errorf("the node's links were %v before ADD (then %s and %s were added) and are %v after DEL", before, addressed, peer, after)
	}
	e2e.RequireNothingLeft(t, ns, pool.Name)
}
