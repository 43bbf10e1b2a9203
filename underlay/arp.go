package underlay

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"time"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
	"github.com/mdlayher/packet"
)

// The probes below open their sockets in the calling thread's netns: call them inside
// ns.WithNetNSPath for the pod. Every wait is bounded by the caller's duration.

// arpConn is a raw ARP socket on one interface. arp.Client refuses an interface without
// an IPv4 address, and a conflict probe must run before the address is set.
type arpConn struct {
	ifi *net.Interface
	p   *packet.Conn
}

func dialARP(ifName string) (*arpConn, error) {
	ifi, err := net.InterfaceByName(ifName)
	if err != nil {
		return nil, err
	}
	p, err := packet.Listen(ifi, packet.Raw, int(ethernet.EtherTypeARP), nil)
	if err != nil {
		return nil, fmt.Errorf("ARP socket on %s: %w", ifName, err)
	}
	return &arpConn{ifi: ifi, p: p}, nil
}

func (c *arpConn) Close() error { return c.p.Close() }

// send broadcasts an ARP packet with the given sender and target addresses.
func (c *arpConn) send(op arp.Operation, sender, target netip.Addr) error {
	pkt, err := arp.NewPacket(op, c.ifi.HardwareAddr, sender, ethernet.Broadcast, target)
	if err != nil {
		return err
	}
	pb, err := pkt.MarshalBinary()
	if err != nil {
		return err
	}
	f := &ethernet.Frame{Destination: ethernet.Broadcast, Source: c.ifi.HardwareAddr, EtherType: ethernet.EtherTypeARP, Payload: pb}
	fb, err := f.MarshalBinary()
	if err != nil {
		return err
	}
	_, err = c.p.WriteTo(fb, &packet.Addr{HardwareAddr: ethernet.Broadcast})
	return err
}

// awaitSender reads until deadline for an ARP packet whose sender is ip and whose
// hardware address is not ours; resend is called at each tick to repeat the question.
func (c *arpConn) awaitSender(ip netip.Addr, deadline time.Time, resend func() error) (net.HardwareAddr, error) {
	const tries = 3
	buf := make([]byte, 128)
	tick := time.Until(deadline) / tries
	for i := 0; i < tries; i++ {
		if err := resend(); err != nil {
			return nil, err
		}
		stop := time.Now().Add(tick)
		if i == tries-1 {
			stop = deadline
		}
		if err := c.p.SetReadDeadline(stop); err != nil {
			return nil, err
		}
		for {
			n, _, err := c.p.ReadFrom(buf)
			if errors.Is(err, os.ErrDeadlineExceeded) {
				break
			}
			if err != nil {
				return nil, err
			}
			var f ethernet.Frame
			var pkt arp.Packet
			if f.UnmarshalBinary(buf[:n]) != nil || pkt.UnmarshalBinary(f.Payload) != nil {
				continue
			}
			if pkt.SenderIP == ip && pkt.SenderHardwareAddr.String() != c.ifi.HardwareAddr.String() {
				return pkt.SenderHardwareAddr, nil
			}
		}
	}
	return nil, nil
}

// ProbeIPv4 asks the segment whether anyone holds ip, as RFC 5227 describes (sender
// address 0.0.0.0, so no neighbour learns a mapping from the question), and returns the
// hardware address that answered, or nil when nobody did within wait.
func ProbeIPv4(ifName string, ip netip.Addr, wait time.Duration) (net.HardwareAddr, error) {
	c, err := dialARP(ifName)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return c.awaitSender(ip, time.Now().Add(wait), func() error {
		return c.send(arp.OperationRequest, netip.IPv4Unspecified(), ip)
	})
}

// ResolveIPv4 asks for gw from src and returns who answered (nil: nobody within wait).
func ResolveIPv4(ifName string, src, gw netip.Addr, wait time.Duration) (net.HardwareAddr, error) {
	c, err := dialARP(ifName)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return c.awaitSender(gw, time.Now().Add(wait), func() error {
		return c.send(arp.OperationRequest, src, gw)
	})
}

// AnnounceIPv4 sends a gratuitous ARP for ip so switches and neighbours forget whatever
// MAC held the address before (a previous pod's, typically).
func AnnounceIPv4(ifName string, ip netip.Addr) error {
	c, err := dialARP(ifName)
	if err != nil {
		return err
	}
	defer c.Close()
	return c.send(arp.OperationRequest, ip, ip)
}
