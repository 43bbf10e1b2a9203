package underlay

import (
	"fmt"
	"net"

	"github.com/containernetworking/plugins/pkg/netlinksafe"
	"github.com/containernetworking/plugins/pkg/utils/sysctl"
	"github.com/vishvananda/netlink"
)

// PrepareLink readies the delegate's link for its addresses: it sets mac (nil keeps the
// delegate's), turns the kernel's IPv6 duplicate address detection off unless dad (it
// holds every ADD for a second or more, and is only wanted as a conflict check), and
// brings the link up so probes can be sent. It returns the link's MAC.
func PrepareLink(ifName string, mac net.HardwareAddr, dad bool) (net.HardwareAddr, error) {
	link, err := netlinksafe.LinkByName(ifName)
	if err != nil {
		return nil, err
	}
	if mac != nil {
		if err := netlink.LinkSetHardwareAddr(link, mac); err != nil {
			return nil, fmt.Errorf("setting MAC %s on %s: %w", mac, ifName, err)
		}
	}
	if !dad {
		_, _ = sysctl.Sysctl(fmt.Sprintf("net/ipv6/conf/%s/accept_dad", ifName), "0")
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return nil, err
	}
	if link, err = netlinksafe.LinkByName(ifName); err != nil {
		return nil, err
	}
	return link.Attrs().HardwareAddr, nil
}
