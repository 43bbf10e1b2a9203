package underlay

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"time"

	"github.com/containernetworking/plugins/pkg/netlinksafe"
	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
	"github.com/mdlayher/packet"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// The probes below open their sockets in the calling thread's netns: call them inside
// ns.WithNetNSPath for the pod. Every wait is bounded by the caller's duration.

// probeTries is how many times a question is asked within its window: a lost frame
// costs a third of the window, not the answer.
const probeTries = 3

// arpConn is a raw ARP socket on one interface. arp.Client refuses an interface without
// an IPv4 address, and a conflict probe must run before the address is set.
type arpConn struct {
	ifi *net.Interface
	p   *packet.Conn
	// ours are other links' MACs whose answers are the prober's own (StartPodConflictProbe)
	ours map[string]bool
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

// Close closes the socket. Closing a packet socket waits for an RCU grace period in
// the kernel (packet_release calls synchronize_net): several ms, more on a busy node.
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
	return retryNoBuffers(func() error {
		_, err := c.p.WriteTo(fb, &packet.Addr{HardwareAddr: ethernet.Broadcast})
		return err
	})
}

// sendAttempts and sendBackoff bound the retries of a frame the kernel had no room for.
const (
	sendAttempts = 6
	sendBackoff  = time.Millisecond
)

// retryNoBuffers retries write while the kernel answers ENOBUFS: a macvlan parent queues
// every broadcast for each of its macvlans, and on a node starting many pods at once that
// queue overflows for a moment (40 parallel ADDs failed 3 in 1000 on it). The frame was
// not sent; sending it again a little later is what a busy NIC's driver would do.
func retryNoBuffers(write func() error) error {
	wait := sendBackoff
	for attempt := 1; ; attempt++ {
		err := write()
		if !errors.Is(err, unix.ENOBUFS) || attempt == sendAttempts {
			return err
		}
		time.Sleep(wait)
		wait *= 2
	}
}

// answer is an ARP packet another host sent: who claims which address.
type answer struct {
	ip  netip.Addr
	mac net.HardwareAddr
}

// foreign parses a frame and returns its ARP sender when that is not this interface.
func (c *arpConn) foreign(frame []byte) (answer, bool) {
	var f ethernet.Frame
	var pkt arp.Packet
	if f.UnmarshalBinary(frame) != nil || pkt.UnmarshalBinary(f.Payload) != nil {
		return answer{}, false
	}
	if mac := pkt.SenderHardwareAddr.String(); mac == c.ifi.HardwareAddr.String() || c.ours[mac] {
		return answer{}, false
	}
	return answer{ip: pkt.SenderIP, mac: pkt.SenderHardwareAddr}, true
}

// listen asks (the first question is the caller's: it is already on the wire at
// start), then reads until start+window for an ARP packet that match accepts, asking
// again at each third of the window. When the window has passed it also reads what is
// already queued: an answer that arrived in time counts even when this goroutine was
// not scheduled to read it in time (on a busy node it often is not).
func (c *arpConn) listen(start time.Time, window time.Duration, ask func() error, match func(answer) bool) (*answer, error) {
	buf := make([]byte, 128)
	for i := 1; i <= probeTries; i++ {
		if err := c.p.SetReadDeadline(start.Add(window * time.Duration(i) / probeTries)); err != nil {
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
			if a, ok := c.foreign(buf[:n]); ok && match(a) {
				return &a, nil
			}
		}
		if i < probeTries {
			if err := ask(); err != nil {
				return nil, err
			}
		}
	}
	return c.drain(buf, match)
}

// drain reads what the socket holds without waiting. A read deadline that has passed
// makes Go refuse to read at all, so this reads the descriptor directly.
func (c *arpConn) drain(buf []byte, match func(answer) bool) (*answer, error) {
	rc, err := c.p.SyscallConn()
	if err != nil {
		return nil, err
	}
	var found *answer
	var readErr error
	err = rc.Control(func(fd uintptr) {
		for {
			n, _, err := unix.Recvfrom(int(fd), buf, unix.MSG_DONTWAIT)
			if err != nil {
				if !errors.Is(err, unix.EAGAIN) && !errors.Is(err, unix.EINTR) {
					readErr = err
				}
				return
			}
			if a, ok := c.foreign(buf[:n]); ok && match(a) {
				found = &a
				return
			}
		}
	})
	if err != nil {
		return nil, err
	}
	return found, readErr
}

// ConflictProbe is an RFC 5227 probe of a link's IPv4 addresses, in flight: it is
// started as soon as the link is up, collects answers in the background while the
// caller configures the pod, and is waited for before anything outside the pod learns
// the addresses (announcement, gateway check, host routes). The questions carry sender
// address 0.0.0.0, so no neighbour learns a mapping from them.
type ConflictProbe struct {
	c     *arpConn
	ips   []netip.Addr
	start time.Time
	done  chan struct{}
	found *answer
	err   error
}

// StartConflictProbe opens the ARP socket on ifName (in the calling thread's netns),
// asks once for each of ips and returns; Wait gives the verdict after window.
func StartConflictProbe(ifName string, ips []netip.Addr, window time.Duration) (*ConflictProbe, error) {
	return startConflictProbe(ifName, ips, window, nil)
}

// StartPodConflictProbe is StartConflictProbe for a pod's own interface, called in the
// pod's netns. The pod's other links that hold none of ips do not count as other hosts:
// Linux answers ARP for an address of the host on any of its links (arp_ignore 0, the
// default), and a probe from 0.0.0.0 passes reverse-path filtering, so a pod with two
// NICs on one segment (two subnets on one master) hears its other NIC answer for the
// address being set on this one, and would fail every ADD of its second NIC. A link that
// holds the address itself still answers as a conflict.
func StartPodConflictProbe(ifName string, ips []netip.Addr, window time.Duration) (*ConflictProbe, error) {
	ours, err := siblingMACs(ifName, ips)
	if err != nil {
		return nil, err
	}
	return startConflictProbe(ifName, ips, window, ours)
}

// siblingMACs are the MACs of the netns' links other than ifName that hold none of ips.
func siblingMACs(ifName string, ips []netip.Addr) (map[string]bool, error) {
	links, err := netlinksafe.LinkList()
	if err != nil {
		return nil, fmt.Errorf("listing the pod's links: %w", err)
	}
	ours := map[string]bool{}
	for _, l := range links {
		mac := l.Attrs().HardwareAddr
		if l.Attrs().Name == ifName || len(mac) == 0 {
			continue
		}
		holds, err := holdsAny(l, ips)
		if err != nil {
			return nil, err
		}
		if !holds {
			ours[mac.String()] = true
		}
	}
	return ours, nil
}

func holdsAny(l netlink.Link, ips []netip.Addr) (bool, error) {
	addrs, err := netlinksafe.AddrList(l, netlink.FAMILY_V4)
	if err != nil {
		return false, fmt.Errorf("addresses of %s: %w", l.Attrs().Name, err)
	}
	for _, a := range addrs {
		for _, ip := range ips {
			if a.IP.Equal(ip.AsSlice()) {
				return true, nil
			}
		}
	}
	return false, nil
}

func startConflictProbe(ifName string, ips []netip.Addr, window time.Duration, ours map[string]bool) (*ConflictProbe, error) {
	c, err := dialARP(ifName)
	if err != nil {
		return nil, err
	}
	c.ours = ours
	p := &ConflictProbe{c: c, ips: ips, start: time.Now(), done: make(chan struct{})}
	if err := p.ask(); err != nil {
		c.Close()
		return nil, err
	}
	go func() {
		defer close(p.done)
		p.found, p.err = c.listen(p.start, window, p.ask, func(a answer) bool {
			for _, ip := range p.ips {
				if a.ip == ip {
					return true
				}
			}
			return false
		})
	}()
	return p, nil
}

func (p *ConflictProbe) ask() error {
	for _, ip := range p.ips {
		if err := p.c.send(arp.OperationRequest, netip.IPv4Unspecified(), ip); err != nil {
			return fmt.Errorf("ARP probe for %s: %w", ip, err)
		}
	}
	return nil
}

// Conflict is an address another host answered for.
type Conflict struct {
	IP  netip.Addr
	MAC net.HardwareAddr
	// After is how long after the first question the answer was read.
	After time.Duration
}

// Wait blocks until the window has passed or someone answered, and returns who did
// (nil: nobody).
func (p *ConflictProbe) Wait() (*Conflict, error) {
	<-p.done
	if p.err != nil || p.found == nil {
		return nil, p.err
	}
	return &Conflict{IP: p.found.ip, MAC: p.found.mac, After: time.Since(p.start)}, nil
}

// Announce sends a gratuitous ARP for each ip on the probe's socket (see AnnounceIPv4);
// call it after Wait found nothing.
func (p *ConflictProbe) Announce(ips []netip.Addr) error {
	for _, ip := range ips {
		if err := p.c.send(arp.OperationRequest, ip, ip); err != nil {
			return fmt.Errorf("announcing %s: %w", ip, err)
		}
	}
	return nil
}

// Close stops the probe and closes its socket in the background: the close waits for
// the kernel (see arpConn.Close), and nothing the caller does next needs it done.
func (p *ConflictProbe) Close() {
	go func() {
		_ = p.c.Close() // ends a listen still reading, with an error nobody waits for
		<-p.done
	}()
}

// ResolveIPv4 asks for gw from src and returns who answered (nil: nobody within wait).
func ResolveIPv4(ifName string, src, gw netip.Addr, wait time.Duration) (net.HardwareAddr, error) {
	c, err := dialARP(ifName)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	ask := func() error { return c.send(arp.OperationRequest, src, gw) }
	start := time.Now()
	if err := ask(); err != nil {
		return nil, err
	}
	a, err := c.listen(start, wait, ask, func(a answer) bool { return a.ip == gw })
	if err != nil || a == nil {
		return nil, err
	}
	return a.mac, nil
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
