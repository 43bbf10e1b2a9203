package underlay

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/containernetworking/plugins/pkg/netlinksafe"
	"github.com/containernetworking/plugins/pkg/utils/sysctl"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// PrepareLink readies the delegate's link for its addresses: it sets mac (nil keeps the
// delegate's), brings the link up so probes can be sent, and returns the link's MAC.
// dadWindow decides the kernel's IPv6 duplicate address detection: below 0 off (it is
// only wanted as a conflict check), 0 left as it is (nobody waits for it), above 0
// sized to that window (see TuneDAD). A link the delegate already brought up is taken
// down first then, so its link-local address is checked again in the short window
// rather than within the defaults' second or two, which ADD would wait for.
func PrepareLink(ifName string, mac net.HardwareAddr, dadWindow time.Duration) (net.HardwareAddr, error) {
	link, err := netlinksafe.LinkByName(ifName)
	if err != nil {
		return nil, err
	}
	if mac != nil {
		if err := netlink.LinkSetHardwareAddr(link, mac); err != nil {
			return nil, fmt.Errorf("setting MAC %s on %s: %w", mac, ifName, err)
		}
	}
	switch {
	case dadWindow < 0:
		_, _ = sysctl.Sysctl(fmt.Sprintf("net/ipv6/conf/%s/accept_dad", ifName), "0")
	case dadWindow > 0 && ipv6Enabled(ifName):
		if err := TuneDAD(ifName, dadWindow); err != nil {
			return nil, err
		}
		if link.Attrs().Flags&net.FlagUp != 0 {
			if err := netlink.LinkSetDown(link); err != nil {
				return nil, err
			}
		}
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return nil, err
	}
	if link, err = netlinksafe.LinkByName(ifName); err != nil {
		return nil, err
	}
	return link.Attrs().HardwareAddr, nil
}

// ipv6Enabled: a netns with IPv6 off has no sysctls to tune, and no DAD to size.
func ipv6Enabled(ifName string) bool {
	_, err := sysctl.Sysctl(fmt.Sprintf("net/ipv6/conf/%s/disable_ipv6", ifName))
	return err == nil
}

// AddAddresses puts prefixes on ifName, which PrepareLink brought up, without waiting
// for anything: IPv6 ones start tentative while the kernel checks them (AwaitDAD).
// IPv6 is switched on for the link and loopback first when the runtime had it off, and
// the link keeps its addresses across a down/up, as the CNI plugins' ConfigureIface does.
func AddAddresses(ifName string, prefixes []netip.Prefix) error {
	link, err := netlinksafe.LinkByName(ifName)
	if err != nil {
		return err
	}
	v6 := false
	for _, p := range prefixes {
		if p.Addr().Is6() && !v6 {
			v6 = true
			for _, itf := range []string{"lo", ifName} {
				key := fmt.Sprintf("net/ipv6/conf/%s/disable_ipv6", itf)
				if v, err := sysctl.Sysctl(key); err == nil && strings.TrimSpace(v) != "0" {
					if _, err := sysctl.Sysctl(key, "0"); err != nil {
						return fmt.Errorf("enabling IPv6 on %s: %w", itf, err)
					}
				}
			}
			if _, err := sysctl.Sysctl(fmt.Sprintf("net/ipv6/conf/%s/keep_addr_on_down", ifName), "1"); err != nil {
				return fmt.Errorf("setting keep_addr_on_down on %s: %w", ifName, err)
			}
		}
		ipn := &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
		if err := netlink.AddrAdd(link, &netlink.Addr{IPNet: ipn}); err != nil {
			return fmt.Errorf("adding %s to %s: %w", p, ifName, err)
		}
	}
	return nil
}

// TakeBackAddresses sets ifName down and removes its addresses other than IPv6
// link-local ones: a delegate that insists on configuring the addresses itself (ipvlan)
// has put them there and brought the link up, and ADD configures them again its own way,
// under the conflict probe and with DAD sized to its window, as for any delegate.
func TakeBackAddresses(ifName string) error {
	link, err := netlinksafe.LinkByName(ifName)
	if err != nil {
		return err
	}
	if err := netlink.LinkSetDown(link); err != nil {
		return fmt.Errorf("setting %s down: %w", ifName, err)
	}
	addrs, err := netlinksafe.AddrList(link, netlink.FAMILY_ALL)
	if err != nil {
		return fmt.Errorf("listing the addresses of %s: %w", ifName, err)
	}
	for i := range addrs {
		if addrs[i].IP.IsLinkLocalUnicast() && addrs[i].IP.To4() == nil {
			continue
		}
		if err := netlink.AddrDel(link, &addrs[i]); err != nil {
			return fmt.Errorf("removing %s from %s: %w", addrs[i].IPNet, ifName, err)
		}
	}
	return nil
}

// SpeaksARP reports whether ifName resolves neighbours at all: an ipvlan in l3 or l3s mode
// is NOARP (its addresses are routed to the node, never resolved on the segment), so
// neither ARP nor NDP leaves it, and probing or announcing from it can only fail.
func SpeaksARP(ifName string) (bool, error) {
	link, err := netlinksafe.LinkByName(ifName)
	if err != nil {
		return false, err
	}
	return link.Attrs().RawFlags&unix.IFF_NOARP == 0, nil
}

// ParentIndex is the index of ifName's master (an ipvlan's or macvlan's), in the netns the
// master is in.
func ParentIndex(ifName string) (int, error) {
	link, err := netlinksafe.LinkByName(ifName)
	if err != nil {
		return 0, err
	}
	if link.Attrs().ParentIndex == 0 {
		return 0, fmt.Errorf("%s has no master", ifName)
	}
	return link.Attrs().ParentIndex, nil
}

// LinkNameByIndex names the link of index in the calling thread's netns.
func LinkNameByIndex(index int) (string, error) {
	link, err := netlink.LinkByIndex(index)
	if err != nil {
		return "", err
	}
	return link.Attrs().Name, nil
}
