package underlay

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/containernetworking/plugins/pkg/netlinksafe"
	"github.com/vishvananda/netlink"
)

// BondSpec is a bond to make: its name, mode and slaves by name, and the options set (0 or
// empty: the kernel's default). Package chain checked the names.
type BondSpec struct {
	Name, Mode string
	Slaves     []string

	Miimon, UpDelay, DownDelay, MinLinks int
	LacpRate, XmitHashPolicy, Primary    string
}

// EnsureBond makes sure the bond s names is in the calling thread's netns and up: a bond
// of that name is used as it is; else it is made from the slaves (marked OwnerAlias), each
// of which must be present, in no other master and without addresses. created says
// whether it was made here.
func EnsureBond(s BondSpec) (created bool, err error) {
	l, err := netlinksafe.LinkByName(s.Name)
	if err == nil {
		if _, ok := l.(*netlink.Bond); !ok {
			return false, fmt.Errorf("bond.name %s is a %s link on the node, not a bond: name another bond, or remove bond to use %s as the master", s.Name, l.Type(), s.Name)
		}
		return false, setUp(l)
	}
	if !isNotFound(err) {
		return false, err
	}
	slaves, err := freeSlaves(s)
	if err != nil {
		return false, err
	}
	return true, makeBond(s, slaves)
}

// freeSlaves looks the slaves up and refuses one that is missing, enslaved or addressed.
func freeSlaves(s BondSpec) ([]netlink.Link, error) {
	out := make([]netlink.Link, 0, len(s.Slaves))
	for i, name := range s.Slaves {
		l, err := netlinksafe.LinkByName(name)
		if isNotFound(err) {
			return nil, fmt.Errorf("bond.slaves[%d] %s is not on the node: name NICs the node has (ip link)", i, name)
		}
		if err != nil {
			return nil, err
		}
		if m := l.Attrs().MasterIndex; m != 0 {
			return nil, fmt.Errorf("bond.slaves[%d] %s is already enslaved to %s: release it (ip link set %s nomaster) or name another NIC", i, name, nameOf(m), name)
		}
		addrs, err := globalAddrs(l)
		if err != nil {
			return nil, err
		}
		if len(addrs) > 0 {
			return nil, fmt.Errorf("bond.slaves[%d] %s carries %s: enslaving it would take those addresses off the network; name NICs without addresses, or move them to the bond yourself", i, name, strings.Join(addrs, ", "))
		}
		out = append(out, l)
	}
	return out, nil
}

func nameOf(index int) string {
	if l, err := netlink.LinkByIndex(index); err == nil {
		return l.Attrs().Name
	}
	return fmt.Sprintf("the link of index %d", index)
}

// globalAddrs lists l's addresses but IPv6 link-local ones (the kernel gives every link
// one: they say nothing of its use).
func globalAddrs(l netlink.Link) ([]string, error) {
	addrs, err := netlinksafe.AddrList(l, netlink.FAMILY_ALL)
	if err != nil {
		return nil, fmt.Errorf("listing the addresses of %s: %w", l.Attrs().Name, err)
	}
	var out []string
	for _, a := range addrs {
		if ip, ok := netip.AddrFromSlice(a.IP); ok && !(ip.Is6() && ip.IsLinkLocalUnicast()) {
			out = append(out, a.IPNet.String())
		}
	}
	return out, nil
}

// makeBond creates the bond, marks it, enslaves the slaves and brings it up; a failure
// after creating it deletes it again (which releases the slaves).
func makeBond(s BondSpec, slaves []netlink.Link) error {
	b := netlink.NewLinkBond(netlink.LinkAttrs{Name: s.Name})
	b.Mode = netlink.StringToBondMode(s.Mode)
	setBondOptions(b, s, slaves)
	if err := netlink.LinkAdd(b); err != nil {
		return fmt.Errorf("creating bond %s (%s): %w", s.Name, s.Mode, err)
	}
	err := markAndUp(s.Name)
	for i := 0; err == nil && i < len(slaves); i++ {
		err = enslave(slaves[i], b)
	}
	if err != nil {
		_ = DeleteLink(s.Name)
		return err
	}
	return nil
}

func setBondOptions(b *netlink.Bond, s BondSpec, slaves []netlink.Link) {
	for _, o := range []struct {
		v   int
		dst *int
	}{{s.Miimon, &b.Miimon}, {s.UpDelay, &b.UpDelay}, {s.DownDelay, &b.DownDelay}, {s.MinLinks, &b.MinLinks}} {
		if o.v > 0 {
			*o.dst = o.v
		}
	}
	if s.LacpRate != "" {
		b.LacpRate = netlink.StringToBondLacpRate(s.LacpRate)
	}
	if s.XmitHashPolicy != "" {
		b.XmitHashPolicy = netlink.StringToBondXmitHashPolicy(s.XmitHashPolicy)
	}
	for _, l := range slaves {
		if l.Attrs().Name == s.Primary {
			b.Primary = l.Attrs().Index
		}
	}
}

// enslave puts slave into bond: the kernel takes only a slave that is down.
func enslave(slave netlink.Link, bond *netlink.Bond) error {
	name := slave.Attrs().Name
	if err := netlink.LinkSetDown(slave); err != nil {
		return fmt.Errorf("setting bond slave %s down: %w", name, err)
	}
	if err := netlink.LinkSetMasterByIndex(slave, bond.Attrs().Index); err != nil {
		return fmt.Errorf("enslaving %s to bond %s: %w (a NIC with macvlan or ipvlan links on it, or in a bridge, cannot be enslaved)", name, bond.Name, err)
	}
	return netlink.LinkSetUp(slave)
}
