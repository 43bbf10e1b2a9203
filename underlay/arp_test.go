package underlay

import (
	"fmt"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/mdlayher/arp"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// A host that holds the address answers the probe; nobody answering for a free one
// takes the whole window (the verdict "free" is never given early).
func TestConflictProbeFindsTheHolderAndWaitsOutTheWindowOtherwise(t *testing.T) {
	inPodNetns(t, "10.250.9.2/24", func() {
		peer, err := netlink.LinkByName("peer1")
		if err == nil {
			err = netlink.AddrAdd(peer, &netlink.Addr{IPNet: netlink.NewIPNet(netip.MustParseAddr("10.250.9.7").AsSlice())})
		}
		if err != nil {
			t.Fatal(err)
		}
		const window = 30 * time.Millisecond
		p, err := StartConflictProbe("net1", []netip.Addr{netip.MustParseAddr("10.250.9.7")}, window)
		if err != nil {
			t.Fatal(err)
		}
		c, err := p.Wait()
		p.Close()
		if err != nil || c == nil || c.MAC.String() != peer.Attrs().HardwareAddr.String() {
			t.Fatalf("probe for an address peer1 holds = %+v, %v; want peer1's MAC %s", c, err, peer.Attrs().HardwareAddr)
		}
		start := time.Now()
		p, err = StartConflictProbe("net1", []netip.Addr{netip.MustParseAddr("10.250.9.8")}, window)
		if err != nil {
			t.Fatal(err)
		}
		c, err = p.Wait()
		p.Close()
		if err != nil || c != nil {
			t.Fatalf("probe for a free address = %+v, %v; want nobody", c, err)
		}
		if waited := time.Since(start); waited < window {
			t.Fatalf("verdict 'free' after %s, before the %s window had passed", waited, window)
		}
	})
}

// A pod with two NICs on one segment (two subnets on one master): Linux answers ARP for
// an address of the pod on any of its links, and a probe from 0.0.0.0 passes reverse-path
// filtering, so the pod's other NIC answers the probe for the address being set on this
// one. Here peer1 stands for that other NIC. A pod's probe takes that answer for its own,
// not a conflict (else the second NIC's every ADD fails); a sibling holding the address
// itself is still a conflict (TestConflictProbeFindsTheHolderAndWaitsOutTheWindowOtherwise).
func TestAPodsProbeIgnoresItsOtherNICAnsweringForTheAddressBeingSet(t *testing.T) {
	inPodNetns(t, "10.250.9.2/24", func() {
		net1, err := netlink.LinkByName("net1")
		if err != nil {
			t.Fatal(err)
		}
		const window = 30 * time.Millisecond
		for i, start := range []func(string, []netip.Addr, time.Duration) (*ConflictProbe, error){StartConflictProbe, StartPodConflictProbe} {
			ip := netip.MustParseAddr(fmt.Sprintf("10.250.9.%d", 20+i))
			p, err := start("net1", []netip.Addr{ip}, window)
			if err != nil {
				t.Fatal(err)
			}
			// set while the probe listens, as ADD does
			if err := netlink.AddrAdd(net1, &netlink.Addr{IPNet: netlink.NewIPNet(ip.AsSlice())}); err != nil {
				t.Fatal(err)
			}
			c, err := p.Wait()
			p.Close()
			switch {
			case err != nil:
				t.Fatal(err)
			case i == 0 && c == nil:
				t.Fatal("the kernel no longer answers for an address of another link: the pod probe's rule is moot")
			case i == 1 && c != nil:
				t.Fatalf("the pod's own other NIC %s answering for %s was taken for a conflict", c.MAC, c.IP)
			}
		}
	})
}

// An answer that arrived within the window counts even when the probe's reader was not
// scheduled until after it: on a busy node the goroutine often wakes past its deadline,
// and Go then refuses to read at all. Here every deadline has passed before listen
// starts, so only the final read of what is queued can find the answer.
func TestConflictProbeCountsAnAnswerQueuedBeforeItWasRead(t *testing.T) {
	inPodNetns(t, "10.250.9.2/24", func() {
		peer, err := netlink.LinkByName("peer1")
		if err == nil {
			err = netlink.AddrAdd(peer, &netlink.Addr{IPNet: netlink.NewIPNet(netip.MustParseAddr("10.250.9.7").AsSlice())})
		}
		if err != nil {
			t.Fatal(err)
		}
		c, err := dialARP("net1")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		ip := netip.MustParseAddr("10.250.9.7")
		if err := c.send(arp.OperationRequest, netip.IPv4Unspecified(), ip); err != nil {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond) // peer1's kernel answers; the answer waits in net1's queue
		long := time.Now().Add(-time.Second)
		got, err := c.listen(long, 30*time.Millisecond, func() error { return nil }, func(a answer) bool { return a.ip == ip })
		if err != nil {
			t.Fatal(err)
		}
		if got == nil || got.mac.String() != peer.Attrs().HardwareAddr.String() {
			t.Fatalf("answer queued within the window, read after it: got %+v, want %s by %s", got, ip, peer.Attrs().HardwareAddr)
		}
	})
}

// A frame the kernel had no buffer for is sent again, a bounded number of times; any
// other error is returned at once.
func TestSendRetriesWhenTheKernelHasNoBuffers(t *testing.T) {
	for _, tc := range []struct {
		name      string
		failures  int
		err       error
		wantCalls int
		wantErr   bool
	}{
		{"a full queue for a moment", 2, unix.ENOBUFS, 3, false},
		{"a queue that stays full", 100, unix.ENOBUFS, sendAttempts, true},
		{"another error", 1, unix.ENETDOWN, 1, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			calls := 0
			err := retryNoBuffers(func() error {
				calls++
				if calls <= tc.failures {
					return &os.SyscallError{Syscall: "sendto", Err: tc.err}
				}
				return nil
			})
			if calls != tc.wantCalls || (err != nil) != tc.wantErr {
				t.Fatalf("%d calls, err %v; want %d calls, error %t", calls, err, tc.wantCalls, tc.wantErr)
			}
		})
	}
}
