package underlay

import (
	"net/netip"
	"os"
	"strings"
	"testing"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/containernetworking/plugins/pkg/testutils"
	"github.com/vishvananda/netlink"

	"github.com/underpool/underpool/netplan"
)

// inPodNetns runs fn in a throw-away netns holding a link "net1" with addr, up (a veth:
// this kernel may lack the dummy driver).
func inPodNetns(t *testing.T, addr string, fn func()) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("network namespaces need root")
	}
	podNS, err := testutils.NewNS()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = podNS.Close(); _ = testutils.UnmountNS(podNS) })
	err = podNS.Do(func(ns.NetNS) error {
		link := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "net1"}, PeerName: "peer1"}
		if err := netlink.LinkAdd(link); err != nil {
			return err
		}
		peer, err := netlink.LinkByName("peer1")
		if err == nil {
			err = netlink.LinkSetUp(peer)
		}
		if err != nil {
			return err
		}
		a, err := netlink.ParseAddr(addr)
		if err != nil {
			return err
		}
		if err := netlink.AddrAdd(link, a); err != nil {
			return err
		}
		if err := netlink.LinkSetUp(link); err != nil {
			return err
		}
		fn()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// The kernel holds what Apply installs, Verify sees it, and Remove takes the table and
// its rules away again (what a DEL relies on when the link outlives nothing).
func TestApplyVerifyRemove(t *testing.T) {
	inPodNetns(t, "10.250.1.5/24", func() {
		table := netplan.TableFor("net1", 0)
		plan, err := netplan.Build(netplan.Intent{IfName: "net1", Table: table, Default4: true,
			Addresses: []netplan.Address{{Prefix: netip.MustParsePrefix("10.250.1.5/24"), Gateway: netip.MustParseAddr("10.250.1.1")}},
			Routes:    []netplan.Route{{Dst: netip.MustParsePrefix("10.0.0.0/8"), Gw: netip.MustParseAddr("10.250.1.254")}}})
		if err != nil {
			t.Fatal(err)
		}
		if diffs, err := Verify("net1", plan); err != nil || len(diffs) != len(plan.Routes)+len(plan.Rules) {
			t.Fatalf("before Apply: %v, %v; want every route and rule missing", diffs, err)
		}
		if err := Apply("net1", plan); err != nil {
			t.Fatal(err)
		}
		if err := Apply("net1", plan); err != nil { // an ADD repeated after a crash converges
			t.Fatalf("second Apply: %v", err)
		}
		if diffs, err := Verify("net1", plan); err != nil || len(diffs) != 0 {
			t.Fatalf("after Apply: %v, %v", diffs, err)
		}
		if held, err := DefaultRouteExists(true); err != nil || !held {
			t.Fatalf("DefaultRouteExists(v4) = %v, %v after installing one", held, err)
		}
		if err := Remove(table, "net1", nil); err != nil {
			t.Fatal(err)
		}
		diffs, _ := Verify("net1", plan)
		for _, want := range []string{"table 101", "from 10.250.1.5/32 lookup 101"} {
			if !strings.Contains(strings.Join(diffs, "; "), want) {
				t.Errorf("after Remove, Verify does not miss %q: %v", want, diffs)
			}
		}
		if _, err := Verify("net9", plan); err == nil {
			t.Error("Verify on a missing link did not fail")
		}
	})
}

// addLink adds a veth end named name with addr, up, in the current netns.
func addLink(t *testing.T, name, addr string) {
	t.Helper()
	link := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name}, PeerName: name + "p"}
	if err := netlink.LinkAdd(link); err != nil {
		t.Fatal(err)
	}
	a, _ := netlink.ParseAddr(addr)
	for _, step := range []func() error{
		func() error { return netlink.AddrAdd(link, a) },
		func() error { return netlink.LinkSetUp(link) },
		func() error {
			p, err := netlink.LinkByName(name + "p")
			if err == nil {
				err = netlink.LinkSetUp(p)
			}
			return err
		},
	} {
		if err := step(); err != nil {
			t.Fatal(err)
		}
	}
}

// DEL of one interface removes only its own rules and routes: net1 and eth1 of one pod
// keep apart whether their tables differ (netplan.TableFor numbers them apart) or are
// one table left by an older numbering.
func TestRemoveTakesOnlyTheAttachmentsRules(t *testing.T) {
	cases := []struct {
		name       string
		net1, eth1 int
	}{
		{"tables numbered by name", netplan.TableFor("net1", 0), netplan.TableFor("eth1", 0)},
		{"one shared table", 101, 101},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			inPodNetns(t, "10.250.1.5/24", func() {
				addLink(t, "eth1", "10.250.2.5/24")
				plan := func(ifName, addr string, table int) netplan.Plan {
					p, err := netplan.Build(netplan.Intent{IfName: ifName, Table: table,
						Addresses: []netplan.Address{{Prefix: netip.MustParsePrefix(addr)}}})
					if err != nil {
						t.Fatal(err)
					}
					return p
				}
				p1, pe := plan("net1", "10.250.1.5/24", c.net1), plan("eth1", "10.250.2.5/24", c.eth1)
				for ifName, p := range map[string]netplan.Plan{"net1": p1, "eth1": pe} {
					if err := Apply(ifName, p); err != nil {
						t.Fatal(err)
					}
				}
				if err := Remove(c.eth1, "eth1", []netip.Addr{netip.MustParseAddr("10.250.2.5")}); err != nil {
					t.Fatal(err)
				}
				if diffs, err := Verify("net1", p1); err != nil || len(diffs) != 0 {
					t.Fatalf("DEL of eth1 took net1's routing: %v %v", diffs, err)
				}
				if diffs, _ := Verify("eth1", pe); len(diffs) != len(pe.Routes)+len(pe.Rules) {
					t.Fatalf("eth1's routing left after its DEL: only %v missing of %v", diffs, pe)
				}
				if users, err := TableLinks(c.net1); err != nil || len(users) != 1 || users[0] != "net1" {
					t.Fatalf("TableLinks(%d) = %v, %v; want net1 alone", c.net1, users, err)
				}
			})
		})
	}
}
