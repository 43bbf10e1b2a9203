package underlay

import (
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
)

// This machine's kernel has no 802.1q or bonding (tests/kernel runs those on one that has);
// what needs neither runs here: ownership, uppers, and the refusals before anything is made.

func addVeth(t *testing.T, name, peer string) netlink.Link {
	t.Helper()
	if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name}, PeerName: peer}); err != nil {
		t.Fatal(err)
	}
	l, err := netlink.LinkByName(name)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func exists(name string) bool {
	_, err := netlink.LinkByName(name)
	return err == nil
}

// Only a link underpool made goes, and only once nothing in the netns hangs off it.
func TestRemoveOwnedTakesOnlyUnderpoolsLinksWithNothingOnThem(t *testing.T) {
	inPodNetns(t, "10.250.9.2/24", func() {
		ours := addVeth(t, "up1", "up1p")
		if err := netlink.LinkSetAlias(ours, OwnerAlias); err != nil {
			t.Fatal(err)
		}
		mv := &netlink.Macvlan{LinkAttrs: netlink.LinkAttrs{Name: "mv1", ParentIndex: ours.Attrs().Index}, Mode: netlink.MACVLAN_MODE_BRIDGE}
		if err := netlink.LinkAdd(mv); err != nil {
			t.Fatal(err)
		}
		if removed, err := RemoveOwned("up1"); err != nil || removed || !exists("up1") {
			t.Fatalf("with a macvlan on it: removed %v, %v; want kept", removed, err)
		}
		if err := netlink.LinkDel(mv); err != nil {
			t.Fatal(err)
		}
		if removed, err := RemoveOwned("up1"); err != nil || !removed || exists("up1") {
			t.Fatalf("nothing on it: removed %v, %v; want gone", removed, err)
		}
		addVeth(t, "op1", "op1p")
		if removed, err := RemoveOwned("op1"); err != nil || removed || !exists("op1") {
			t.Fatalf("the operator's link: removed %v, %v; want kept", removed, err)
		}
		if removed, err := RemoveOwned("nosuch"); err != nil || removed {
			t.Fatalf("a link that is gone: %v, %v; want no error", removed, err)
		}
		owned, err := OwnedLinks()
		if err != nil || len(owned) != 0 {
			t.Fatalf("OwnedLinks = %v, %v; want none (only VLAN interfaces and bonds count)", owned, err)
		}
	})
}

// A veth whose peer sits in another netns names the peer's index there: it hangs off
// nothing here, whatever link has that index.
func TestALinkWhoseParentIsInAnotherNetnsHangsOffNothingHere(t *testing.T) {
	here := &netlink.Macvlan{LinkAttrs: netlink.LinkAttrs{Index: 9, ParentIndex: 4, NetNsID: -1}}
	there := &netlink.Macvlan{LinkAttrs: netlink.LinkAttrs{Index: 9, ParentIndex: 4, NetNsID: 2}}
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Index: 9, ParentIndex: 4, NetNsID: -1}}
	if !hangsOff(here, 4) || hangsOff(there, 4) || hangsOff(veth, 4) || hangsOff(here, 5) {
		t.Fatal("want only the macvlan of this netns on index 4 to hang off it")
	}
}

func TestEnsureVlanAndBondRefuseNamingTheLinkAndTheFix(t *testing.T) {
	inPodNetns(t, "10.250.9.2/24", func() {
		addVeth(t, "m1", "m1p")
		addVeth(t, "m1.100", "m1q") // a veth where the VLAN interface would go
		for _, c := range []struct {
			name string
			err  func() error
			want string
		}{
			{"no master", func() error { _, _, err := EnsureVlan("nosuch", 100, "nosuch.100"); return err }, "the master nosuch"},
			{"the name taken", func() error { _, _, err := EnsureVlan("m1", 100, "m1.100"); return err }, "m1.100 exists but is not VLAN 100 on m1 (it is a veth link)"},
			{"bond name taken", func() error {
				_, err := EnsureBond(BondSpec{Name: "m1", Mode: "active-backup", Slaves: []string{"m1p"}})
				return err
			}, "bond.name m1 is a veth link on the node, not a bond"},
			{"slave missing", func() error { _, err := EnsureBond(BondSpec{Name: "b0", Slaves: []string{"m1p", "eth9"}}); return err }, "bond.slaves[1] eth9 is not on the node"},
			{"slave addressed", func() error { _, err := EnsureBond(BondSpec{Name: "b0", Slaves: []string{"net1"}}); return err }, "bond.slaves[0] net1 carries 10.250.9.2/24"},
		} {
			if err := c.err(); err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("%s: error %v, want one naming %q", c.name, err, c.want)
			}
		}
		if exists("b0") {
			t.Fatal("a refused bond was made")
		}
	})
}
