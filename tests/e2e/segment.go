package e2e

import (
	"testing"

	"github.com/underpool/underpool/tests/harness"
)

// Segment is an L2 segment shared by simulated nodes, as a switch joins real ones: a
// bridge in a netns of its own, so the machine's root namespace never sees it. Each node
// gets an uplink on it (Attach) for its macvlans to hang off, and peers (NewPeer) stand
// for the segment's gateways and what lies behind them.
type Segment struct {
	NS     *harness.NetNS
	bridge string
}

// NewSegment makes the segment; it goes when the test ends.
func NewSegment(t *testing.T) *Segment {
	t.Helper()
	s := &Segment{NS: NewPodNS(t), bridge: "seg0"}
	if err := harness.NewBridge(s.NS, s.bridge); err != nil {
		t.Fatal(err)
	}
	return s
}

// Attach gives the node netns a link named name on the segment: one end of a veth pair,
// the other a port of the segment's bridge. It returns once the link's IPv6 link-local
// address and its local route are in place: the kernel adds them after the link has
// carrier, and one appearing after a reading of the node's state would look like a change.
func (s *Segment) Attach(t *testing.T, node *harness.NetNS, name string) {
	t.Helper()
	port := harness.UniqueName("sgp")
	v, err := harness.NewVethPairIn(node, name, port)
	if err != nil {
		t.Fatalf("uplink %s: %v", name, err)
	}
	t.Cleanup(func() { _ = v.Close() })
	if err := v.MoveB(s.NS); err != nil {
		t.Fatal(err)
	}
	if err := harness.SetMaster(s.NS, port, s.bridge); err != nil {
		t.Fatal(err)
	}
	WaitLinkLocal(t, node, name)
}

// NewPeer is a Peer (see NewPeer) on the segment: it owns gwCIDR and, on its lo, the
// off-segment address remote.
func (s *Segment) NewPeer(t *testing.T, gwCIDR, remote string) Peer {
	t.Helper()
	p := NewPeer(t, s.NS, gwCIDR, remote)
	if err := harness.SetMaster(s.NS, p.Parent, s.bridge); err != nil {
		t.Fatal(err)
	}
	return p
}
