package underlay

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/containernetworking/plugins/pkg/netlinksafe"
	"github.com/containernetworking/plugins/pkg/utils/sysctl"
	"github.com/mdlayher/ndp"
	"github.com/vishvananda/netlink"
)

// IPv6 conflicts are found by the kernel's own duplicate address detection (the
// address is added without NODAD): TuneDAD sizes its window before the link comes up,
// AwaitDAD waits for the verdict and returns the duplicates, ResolveIPv6 then asks who
// holds one, for the error message.

// TuneDAD makes the kernel's duplicate address detection on ifName fit window: three
// neighbour solicitations a third of window apart, sent at once rather than after a
// random delay of up to a second (router_solicitation_delay), instead of the defaults'
// one solicitation and a second's wait. Call it before the link comes up, so its
// link-local address is checked the same way; AwaitDAD puts the retransmit timer back.
func TuneDAD(ifName string, window time.Duration) error {
	retrans := max(window/probeTries, 10*time.Millisecond) // the kernel's floor (HZ/100)
	for key, value := range map[string]string{
		"net/ipv6/conf/" + ifName + "/accept_dad":                "1",
		"net/ipv6/conf/" + ifName + "/dad_transmits":             fmt.Sprint(probeTries),
		"net/ipv6/conf/" + ifName + "/router_solicitation_delay": "0",
		"net/ipv6/neigh/" + ifName + "/retrans_time_ms":          fmt.Sprint(retrans.Milliseconds()),
	} {
		if _, err := sysctl.Sysctl(key, value); err != nil {
			return fmt.Errorf("setting %s: %w", key, err)
		}
	}
	return nil
}

// dadPoll is how often AwaitDAD reads the link's addresses: small against a window of
// tens of ms (ip.SettleAddresses polls every 50 ms).
const dadPoll = 5 * time.Millisecond

// AwaitDAD waits, up to bound, until no IPv6 address of ifName is tentative, and returns
// which of want the kernel marked as duplicates. It then gives the link the kernel's
// default neighbour retransmit timer back: TuneDAD's short one was for DAD only.
func AwaitDAD(ifName string, want []netip.Addr, bound time.Duration) ([]netip.Addr, error) {
	link, err := netlinksafe.LinkByName(ifName)
	if err != nil {
		return nil, err
	}
	for deadline := time.Now().Add(bound); ; time.Sleep(dadPoll) {
		addrs, err := netlinksafe.AddrList(link, netlink.FAMILY_V6)
		if err != nil {
			return nil, err
		}
		var dup []netip.Addr
		tentative := false
		for _, a := range addrs {
			ip, _ := netip.AddrFromSlice(a.IP)
			if a.Flags&syscall.IFA_F_DADFAILED != 0 && slices.Contains(want, ip) {
				dup = append(dup, ip)
			} else if a.Flags&syscall.IFA_F_TENTATIVE != 0 {
				tentative = true
			}
		}
		// a duplicate does not end the wait: the link-local address may still be
		// checked, and needs the short timer until it is
		if !tentative {
			return dup, restoreRetrans(ifName)
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("IPv6 duplicate address detection on %s still running after %s", ifName, bound)
		}
	}
}

// restoreRetrans gives ifName the retransmit timer loopback has: its copy of the
// kernel's default (neigh/default exists in the initial netns only).
func restoreRetrans(ifName string) error {
	def, err := sysctl.Sysctl("net/ipv6/neigh/lo/retrans_time_ms")
	if err != nil {
		return err
	}
	_, err = sysctl.Sysctl("net/ipv6/neigh/"+ifName+"/retrans_time_ms", strings.TrimSpace(def))
	return err
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

// SetDefaultAcceptDAD sets the calling thread's netns default for accept_dad (what a link
// created in or moved into it starts with) and returns the value it had. A netns with IPv6
// off has no such sysctl: then it does nothing and returns "".
func SetDefaultAcceptDAD(value string) (string, error) {
	const key = "net/ipv6/conf/default/accept_dad"
	old, err := sysctl.Sysctl(key)
	if err != nil {
		return "", nil
	}
	if _, err := sysctl.Sysctl(key, value); err != nil {
		return "", fmt.Errorf("setting %s: %w", key, err)
	}
	return strings.TrimSpace(old), nil
}
