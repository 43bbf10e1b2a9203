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
