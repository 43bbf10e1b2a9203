package underlay

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"syscall"
	"time"

	"github.com/containernetworking/plugins/pkg/netlinksafe"
	"github.com/mdlayher/ndp"
	"github.com/vishvananda/netlink"
)

// IPv6 conflicts are found by the kernel's own duplicate address detection (the
// address is added without NODAD and ADD waits for it to settle): DADFailed reads the
// verdict, ResolveIPv6 then asks who holds the address, for the error message.

// DADFailed returns which of want the kernel marked as duplicates on ifName.
func DADFailed(ifName string, want []netip.Addr) ([]netip.Addr, error) {
	link, err := netlinksafe.LinkByName(ifName)
	if err != nil {
		return nil, err
	}
	addrs, err := netlinksafe.AddrList(link, netlink.FAMILY_V6)
	if err != nil {
		return nil, err
	}
	var dup []netip.Addr
	for _, a := range addrs {
		ip, _ := netip.AddrFromSlice(a.IP)
		for _, w := range want {
			if ip == w && a.Flags&syscall.IFA_F_DADFAILED != 0 {
				dup = append(dup, w)
			}
		}
	}
	return dup, nil
}

// ResolveIPv6 sends neighbour solicitations for target from ifName's link-local address
// and returns the link-layer address in the answer (nil: nobody answered within wait).
// The link-local address may itself still be tentative (its duplicate detection started
// when the link came up): the kernel will not send from it until then, so this first
// waits for it, up to settle.
func ResolveIPv6(ifName string, target netip.Addr, wait, settle time.Duration) (net.HardwareAddr, error) {
	if err := awaitLinkLocal(ifName, settle); err != nil {
		return nil, err
	}
	return resolveIPv6(ifName, ndp.LinkLocal, target, wait)
}

func awaitLinkLocal(ifName string, settle time.Duration) error {
	link, err := netlinksafe.LinkByName(ifName)
	if err != nil {
		return err
	}
	for deadline := time.Now().Add(settle); ; time.Sleep(50 * time.Millisecond) {
		addrs, err := netlinksafe.AddrList(link, netlink.FAMILY_V6)
		if err != nil {
			return err
		}
		for _, a := range addrs {
			if a.IP.IsLinkLocalUnicast() && a.Flags&(syscall.IFA_F_TENTATIVE|syscall.IFA_F_DADFAILED) == 0 {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s has no usable link-local address after %s", ifName, settle)
		}
	}
}

// ResolveIPv6From is ResolveIPv6 with a given source address (the pod's, for the gateway).
func ResolveIPv6From(ifName string, src, target netip.Addr, wait time.Duration) (net.HardwareAddr, error) {
	return resolveIPv6(ifName, ndp.Addr(src.String()), target, wait)
}

func resolveIPv6(ifName string, src ndp.Addr, target netip.Addr, wait time.Duration) (net.HardwareAddr, error) {
	ifi, err := net.InterfaceByName(ifName)
	if err != nil {
		return nil, err
	}
	c, _, err := ndp.Listen(ifi, src)
	if err != nil {
		return nil, fmt.Errorf("NDP socket on %s: %w", ifName, err)
	}
	defer c.Close()
	group, err := ndp.SolicitedNodeMulticast(target)
	if err != nil {
		return nil, err
	}
	ns := &ndp.NeighborSolicitation{TargetAddress: target,
		Options: []ndp.Option{&ndp.LinkLayerAddress{Direction: ndp.Source, Addr: ifi.HardwareAddr}}}
	deadline := time.Now().Add(wait)
	const tries = 3
	for i := 0; i < tries; i++ {
		if err := c.WriteTo(ns, nil, group); err != nil {
			return nil, fmt.Errorf("neighbour solicitation for %s on %s: %w", target, ifName, err)
		}
		stop := time.Now().Add(wait / tries)
		if i == tries-1 {
			stop = deadline
		}
		if err := c.SetReadDeadline(stop); err != nil {
			return nil, err
		}
		for {
			msg, _, _, err := c.ReadFrom()
			if errors.Is(err, os.ErrDeadlineExceeded) {
				break
			}
			if err != nil {
				return nil, err
			}
			na, ok := msg.(*ndp.NeighborAdvertisement)
			if !ok || na.TargetAddress != target {
				continue
			}
			for _, o := range na.Options {
				if lla, ok := o.(*ndp.LinkLayerAddress); ok && lla.Direction == ndp.Target {
					return lla.Addr, nil
				}
			}
			return net.HardwareAddr{}, nil // answered without saying its MAC
		}
	}
	return nil, nil
}

// AnnounceIPv6 sends an unsolicited neighbour advertisement for ip (override set) to all
// nodes, the IPv6 counterpart of a gratuitous ARP.
func AnnounceIPv6(ifName string, ip netip.Addr) error {
	ifi, err := net.InterfaceByName(ifName)
	if err != nil {
		return err
	}
	c, _, err := ndp.Listen(ifi, ndp.Addr(ip.String()))
	if err != nil {
		return fmt.Errorf("NDP socket on %s: %w", ifName, err)
	}
	defer c.Close()
	na := &ndp.NeighborAdvertisement{Override: true, TargetAddress: ip,
		Options: []ndp.Option{&ndp.LinkLayerAddress{Direction: ndp.Target, Addr: ifi.HardwareAddr}}}
	return c.WriteTo(na, nil, netip.IPv6LinkLocalAllNodes())
}
