package network

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/cni/pkg/types"
	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
	"github.com/mdlayher/ndp"
	"github.com/mdlayher/packet"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/tests/e2e"
	"github.com/underpool/underpool/tests/harness"
)

// The conflict probe runs while ADD sets the pod's addresses and routes, and ADD then
// waits for what is left of its window. A squatter that answers late in the window (a
// busy host, a lost first answer) must still fail ADD and get the address quarantined:
// an ADD that took its verdict without waiting out the window would return long
// before this squatter speaks, and succeed onto the taken address.
func TestNetworkConflictAnsweredLateInTheWindowFailsAdd(t *testing.T) {
	const window, late = time.Second, 500 * time.Millisecond
	for _, family := range []string{"IPv4", "IPv6"} {
		t.Run(family, func(t *testing.T) {
			v4net, v6net, x := e2e.NextSubnet()
			spec := v1.IPPoolSpec{Subnet: v4net, IPs: []string{fmt.Sprintf("10.250.%d.10", x)}}
			taken, own := fmt.Sprintf("10.250.%d.10", x), fmt.Sprintf("10.250.%d.200/24", x)
			if family == "IPv6" {
				base := strings.TrimSuffix(v6net, "/64")
				spec = v1.IPPoolSpec{Subnet: v6net, IPs: []string{base + "10"}}
				taken, own = base+"10", base+"200/64"
			}
			pool := e2e.NewPool(t, spec)
			peer := e2e.NewPeer(t, nil, own, "") // on the segment; its kernel does not hold taken
			squatterMAC := net.HardwareAddr{0x02, 0x5a, 0x00, 0x00, 0x00, byte(x)}
			target := netip.MustParseAddr(taken)
			var answered <-chan time.Duration
			if family == "IPv4" {
				answered = answerARPLate(t, peer.NS, peer.End, target, squatterMAC, late)
			} else {
				answered = answerNDPLate(t, peer.NS, peer.End, netip.MustParsePrefix(own).Addr(), target, squatterMAC, late)
			}
			nc := e2e.NetConf{Delegate: e2e.MacvlanOn(peer.Parent),
				Extra: map[string]any{"checks": map[string]any{"timeout": window.String()}}}
			conf := nc.WithPool(family, pool.Name).Conflist(t)
			ns := e2e.NewNamespace(t)
			pod := e2e.NewPodNS(t)
			rt := e2e.RuntimeFor(pod, ns, "late", "net1")

			started := time.Now()
			_, err := e2e.Suite.CNI.Add(e2e.Ctx(t), conf, rt)
			took := time.Since(started)
			var cniErr *types.Error
			if !e2e.AsCNIError(err, &cniErr) || cniErr.Code != types.ErrTryAgainLater ||
				!strings.Contains(cniErr.Msg, taken+" is already used by "+squatterMAC.String()) {
				select {
				case d := <-answered:
					t.Fatalf("ADD (%s) onto an address answered for %s after the first question: want code 11 naming %s and %s, got %v",
						took, d, taken, squatterMAC, err)
				default:
					t.Fatalf("ADD (%s): want code 11 naming %s and %s, got %v; the squatter never answered", took, taken, squatterMAC, err)
				}
			}
			q := e2e.FreshState(t, pool.Name).Quarantined
			if len(q) != 1 || q[0].IP != taken {
				t.Fatalf("pool quarantine = %+v, want %s", q, taken)
			}
			e2e.RequireNothingLeft(t, ns, pool.Name)
		})
	}
}

// answerARPLate stands for a host holding ip that answers ARP questions for it (RFC
// 5227 probes included) only after delay. It sends on the channel how long after the
// first question it answered.
func answerARPLate(t *testing.T, peerNS *harness.NetNS, ifName string, ip netip.Addr, mac net.HardwareAddr, delay time.Duration) <-chan time.Duration {
	t.Helper()
	var c *packet.Conn
	var ifi *net.Interface
	err := peerNS.Do(func() error {
		var err error
		if ifi, err = net.InterfaceByName(ifName); err != nil {
			return err
		}
		c, err = packet.Listen(ifi, packet.Raw, int(ethernet.EtherTypeARP), nil)
		return err
	})
	if err != nil {
		t.Fatalf("ARP socket in the squatter's netns: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	answered := make(chan time.Duration, 1)
	go func() {
		buf := make([]byte, 1500)
		var first time.Time
		for {
			n, _, err := c.ReadFrom(buf)
			if err != nil {
				return
			}
			var f ethernet.Frame
			var req arp.Packet
			if f.UnmarshalBinary(buf[:n]) != nil || req.UnmarshalBinary(f.Payload) != nil ||
				req.Operation != arp.OperationRequest || req.TargetIP != ip {
				continue
			}
			if first.IsZero() {
				first = time.Now()
			}
			time.Sleep(time.Until(first.Add(delay)))
			reply, err := arp.NewPacket(arp.OperationReply, mac, ip, req.SenderHardwareAddr, req.SenderIP)
			if err != nil {
				return
			}
			pb, _ := reply.MarshalBinary()
			fb, _ := (&ethernet.Frame{Destination: req.SenderHardwareAddr, Source: mac, EtherType: ethernet.EtherTypeARP, Payload: pb}).MarshalBinary()
			if _, err := c.WriteTo(fb, &packet.Addr{HardwareAddr: req.SenderHardwareAddr}); err != nil {
				return
			}
			select {
			case answered <- time.Since(first):
			default:
			}
		}
	}()
	return answered
}

// answerNDPLate is answerARPLate for IPv6: it answers neighbour solicitations for ip
// (the kernel's duplicate address detection among them) with an advertisement carrying
// mac, only after delay. src is an address the squatter's link already has.
func answerNDPLate(t *testing.T, peerNS *harness.NetNS, ifName string, src, ip netip.Addr, mac net.HardwareAddr, delay time.Duration) <-chan time.Duration {
	t.Helper()
	var c *ndp.Conn
	err := peerNS.Do(func() error {
		ifi, err := net.InterfaceByName(ifName)
		if err != nil {
			return err
		}
		if c, _, err = ndp.Listen(ifi, ndp.Addr(src.String())); err != nil {
			return err
		}
		group, err := ndp.SolicitedNodeMulticast(ip)
		if err != nil {
			return err
		}
		return c.JoinGroup(group)
	})
	if err != nil {
		t.Fatalf("NDP socket in the squatter's netns: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	answered := make(chan time.Duration, 1)
	go func() {
		var first time.Time
		for {
			msg, _, _, err := c.ReadFrom()
			if err != nil {
				return
			}
			if ns, ok := msg.(*ndp.NeighborSolicitation); !ok || ns.TargetAddress != ip {
				continue
			}
			if first.IsZero() {
				first = time.Now()
			}
			time.Sleep(time.Until(first.Add(delay)))
			na := &ndp.NeighborAdvertisement{Override: true, TargetAddress: ip,
				Options: []ndp.Option{&ndp.LinkLayerAddress{Direction: ndp.Target, Addr: mac}}}
			if err := c.WriteTo(na, nil, netip.IPv6LinkLocalAllNodes()); err != nil {
				return
			}
			select {
			case answered <- time.Since(first):
			default:
			}
		}
	}()
	return answered
}
