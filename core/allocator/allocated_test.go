package allocator

import (
	"net/netip"
	"strings"
	"testing"
)

// A status whose offsets run past the pool's subnet is refused, however far past (a typo
// of 2^32 costs what a run of two does); offsets inside it, up to the last, are read.
func TestAllocatedOutsideTheSubnetIsRefused(t *testing.T) {
	v4 := netip.MustParsePrefix("10.0.0.0/24")
	for _, bad := range []string{"1-400000", "0-4294967295", "3,256", "18446744073709551615"} {
		_, err := ParseAllocated(v4, bad)
		if err == nil || !strings.Contains(err.Error(), "outside subnet 10.0.0.0/24") || !strings.Contains(err.Error(), "0-255") {
			t.Errorf("ParseAllocated(%q) = %v, want refused naming the subnet and its offsets", bad, err)
		}
	}
	for _, good := range []string{"", "0-255", "1,3-5,254"} {
		if set, err := ParseAllocated(v4, good); err != nil || set.String() != good {
			t.Errorf("ParseAllocated(%q) = %q, %v", good, set.String(), err)
		}
	}
	if _, err := ParseAllocated(v4, "5-3"); err == nil {
		t.Error("a malformed status was accepted")
	}
	// an IPv6 /64 holds every offset: nothing is outside it
	if _, err := ParseAllocated(netip.MustParsePrefix("fd00::/64"), "0-18446744073709551615"); err != nil {
		t.Errorf("a /64's last offset refused: %v", err)
	}
}
