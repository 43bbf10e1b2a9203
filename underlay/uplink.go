package underlay

import (
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/containernetworking/plugins/pkg/netlinksafe"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// OwnerAlias is the ifalias of a VLAN interface or bond underpool made: only those are
// ever removed (RemoveOwned); an operator's link carries its own alias or none.
const OwnerAlias = "underpool"

// ErrNoVlanName: the VLAN is not on the parent under any name, and ADD was given none to
// make it under (the usual one is too long).
var ErrNoVlanName = errors.New("no name to make the VLAN interface under")

// EnsureVlan makes sure VLAN vlan is on parent in the calling thread's netns and returns
// the interface carrying it: parent itself when it is that VLAN's interface already; the
// link called name when it is that VLAN on parent; an operator's VLAN interface of that ID
// on parent under another name; else a new one called name (marked OwnerAlias, with
// parent's MTU, up). created says whether it was made here.
func EnsureVlan(parent string, vlan int, name string) (got string, created bool, err error) {
	p, err := netlinksafe.LinkByName(parent)
	if err != nil {
		return "", false, fmt.Errorf("the master %s: %w: name a NIC of the node", parent, err)
	}
	if pv, ok := p.(*netlink.Vlan); ok {
		if pv.VlanId == vlan {
			return parent, false, nil // the master is the VLAN's interface: tagged already
		}
		return "", false, fmt.Errorf("the master %s is itself the interface of VLAN %d, not %d: name the untagged NIC under it as the master", parent, pv.VlanId, vlan)
	}
	if name != "" {
		l, err := netlinksafe.LinkByName(name)
		if err == nil {
			return name, false, usableVlan(l, p, vlan)
		}
		if !isNotFound(err) {
			return "", false, err
		}
	}
	if found, err := vlanOn(p.Attrs().Index, vlan); err != nil || found != nil {
		if found != nil {
			return found.Attrs().Name, false, setUp(found)
		}
		return "", false, err
	}
	if name == "" {
		return "", false, ErrNoVlanName
	}
	return name, true, makeVlan(p, vlan, name)
}

// usableVlan: the link called like the VLAN interface must be that VLAN on that parent.
func usableVlan(l, parent netlink.Link, vlan int) error {
	v, ok := l.(*netlink.Vlan)
	if !ok || v.ParentIndex != parent.Attrs().Index || v.VlanId != vlan {
		return fmt.Errorf("%s exists but is not VLAN %d on %s (it is a %s link): rename or remove it", l.Attrs().Name, vlan, parent.Attrs().Name, describeLink(l))
	}
	return setUp(l)
}

func describeLink(l netlink.Link) string {
	if v, ok := l.(*netlink.Vlan); ok {
		return fmt.Sprintf("vlan, ID %d on index %d", v.VlanId, v.ParentIndex)
	}
	return l.Type()
}

// vlanOn finds the VLAN interface of ID vlan on the parent of index parent, or nil: the
// kernel allows one per parent and ID, whatever its name.
func vlanOn(parent, vlan int) (netlink.Link, error) {
	links, err := netlinksafe.LinkList()
	if err != nil {
		return nil, fmt.Errorf("listing the node's links: %w", err)
	}
	for _, l := range links {
		if v, ok := l.(*netlink.Vlan); ok && v.ParentIndex == parent && v.VlanId == vlan {
			return l, nil
		}
	}
	return nil, nil
}

// makeVlan creates name as VLAN vlan on parent, marked as underpool's and up; a failure
// after creating it removes it.
func makeVlan(parent netlink.Link, vlan int, name string) error {
	v := &netlink.Vlan{LinkAttrs: netlink.LinkAttrs{Name: name, ParentIndex: parent.Attrs().Index, MTU: parent.Attrs().MTU}, VlanId: vlan}
	if err := netlink.LinkAdd(v); err != nil {
		return fmt.Errorf("creating VLAN %d on %s as %s: %w", vlan, parent.Attrs().Name, name, err)
	}
	if err := markAndUp(name); err != nil {
		_ = DeleteLink(name)
		return err
	}
	return nil
}

// markAndUp gives the new link name OwnerAlias and brings it up.
func markAndUp(name string) error {
	l, err := netlinksafe.LinkByName(name)
	if err != nil {
		return err
	}
	if err := netlink.LinkSetAlias(l, OwnerAlias); err != nil {
		return fmt.Errorf("marking %s as underpool's: %w", name, err)
	}
	return setUp(l)
}

func setUp(l netlink.Link) error {
	if l.Attrs().Flags&net.FlagUp != 0 {
		return nil
	}
	if err := netlink.LinkSetUp(l); err != nil {
		return fmt.Errorf("setting %s up: %w", l.Attrs().Name, err)
	}
	return nil
}

func isNotFound(err error) bool {
	var nf netlink.LinkNotFoundError
	return errors.As(err, &nf)
}

// RemoveOwned deletes the link called name when underpool made it (OwnerAlias) and no link
// in this netns hangs off it (a VLAN, macvlan or ipvlan an operator put there); a bond's
// slaves are set up again once released. Links in pods' netns are not seen here: the
// caller knows from its records that none is left. removed says whether it went.
func RemoveOwned(name string) (removed bool, err error) {
	l, err := netlinksafe.LinkByName(name)
	if isNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if l.Attrs().Alias != OwnerAlias {
		return false, nil
	}
	links, err := netlinksafe.LinkList()
	if err != nil {
		return false, fmt.Errorf("listing the node's links: %w", err)
	}
	var slaves []netlink.Link
	for _, c := range links {
		switch idx := l.Attrs().Index; {
		case hangsOff(c, idx):
			return false, nil // something of the operator's still hangs off it
		case c.Attrs().MasterIndex == idx:
			slaves = append(slaves, c)
		}
	}
	if err := netlink.LinkDel(l); err != nil && !errors.Is(err, unix.ENODEV) {
		return false, fmt.Errorf("deleting %s: %w", name, err)
	}
	return true, upAgain(slaves)
}

// upperKinds are the link types that hang off a lower link and go when it goes.
var upperKinds = map[string]bool{"vlan": true, "macvlan": true, "ipvlan": true, "macvtap": true, "ipvtap": true}

// hangsOff: c is an upper link of the link of index parent in this netns. A link's parent
// index may be another netns' (a veth's peer in a pod, IFLA_LINK_NETNSID set): such a link
// hangs off nothing here.
func hangsOff(c netlink.Link, parent int) bool {
	a := c.Attrs()
	return upperKinds[c.Type()] && a.ParentIndex == parent && a.Index != parent && a.NetNsID < 0
}

// upAgain brings a deleted bond's former slaves up: the kernel closes a slave it releases,
// and they were up (EnsureBond set them so) while the bond had them.
func upAgain(slaves []netlink.Link) error {
	var errs []string
	for _, s := range slaves {
		if err := netlink.LinkSetUp(s); err != nil && !errors.Is(err, unix.ENODEV) {
			errs = append(errs, fmt.Sprintf("%s: %v", s.Attrs().Name, err))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("setting the bond's former slaves up again: %s", strings.Join(errs, "; "))
	}
	return nil
}

// OwnedLinks names the VLAN interfaces and bonds in this netns that underpool made, VLAN
// interfaces first: a bond goes only once nothing hangs off it.
func OwnedLinks() ([]string, error) {
	links, err := netlinksafe.LinkList()
	if err != nil {
		return nil, fmt.Errorf("listing the node's links: %w", err)
	}
	var vlans, bonds []string
	for _, l := range links {
		switch {
		case l.Attrs().Alias != OwnerAlias:
		case l.Type() == "vlan":
			vlans = append(vlans, l.Attrs().Name)
		case l.Type() == "bond":
			bonds = append(bonds, l.Attrs().Name)
		}
	}
	return append(vlans, bonds...), nil
}
