package chain

import "testing"

func TestHoldsDefaultRule(t *testing.T) {
	cases := []struct {
		name, ifName, configured string
		allowed, exists, want    bool
	}{
		{"first interface takes it", "net1", "", true, false, true},
		{"later interface leaves it", "net2", "", true, true, false},
		{"next to an overlay eth0 that has one", "net1", "", true, true, false},
		{"configured interface takes it even when one exists", "net2", "net2", true, true, true},
		{"other interfaces do not when one is configured", "net1", "net2", true, false, false},
		{"defaultRoute false never takes it", "net1", "net1", false, false, false},
	}
	for _, c := range cases {
		if got := holdsDefault(c.ifName, c.configured, c.allowed, c.exists); got != c.want {
			t.Errorf("%s: got %v, want %v", c.name, got, c.want)
		}
	}
}

// An interface is the pod's way out (and gets a host veth by default) only if it holds the
// default route of every family it has: not a dual-stack NIC that took only the IPv6
// default next to an IPv4-only overlay eth0.
func TestPrimaryHoldsEveryFamilyItHas(t *testing.T) {
	cases := []struct {
		name                       string
		has4, holds4, has6, holds6 bool
		want                       bool
	}{
		{"IPv4-only, holds it", true, true, false, false, true},
		{"dual stack, holds both", true, true, true, true, true},
		{"dual stack next to an IPv4-only eth0: holds only IPv6", true, false, true, true, false},
		{"IPv4-only next to an eth0 that holds it", true, false, false, false, false},
	}
	for _, c := range cases {
		if got := primary(c.has4, c.holds4) && primary(c.has6, c.holds6); got != c.want {
			t.Errorf("%s: got %v, want %v", c.name, got, c.want)
		}
	}
}
