package allocator

import (
	"net/netip"
	"strings"
	"testing"
)

func TestClipReservationsKeepsOnlyThePoolsPart(t *testing.T) {
	prefix := netip.MustParsePrefix("10.250.1.0/24")
	s, errs := ClipReservations(prefix, []string{"10.250.0.250-10.250.1.3", "10.250.1.9", "10.250.2.1", "fd00:250::1", "10.250.1.250-10.250.2.9"})
	if len(errs) != 0 || s.String() != "0-3,9,250-255" {
		t.Fatalf("ClipReservations = %q, %v", s.String(), errs)
	}
}

// The finding of issue 17: one bad entry made the whole ReservedIP count for nothing, and
// the router address beside it became allocatable.
func TestABadEntryKeepsTheOthersReserved(t *testing.T) {
	prefix := netip.MustParsePrefix("10.0.0.0/24")
	s, errs := ClipReservations(prefix, []string{"10.0.0.10", "nonsense", "10.0.0.1-fd00::1", "10.0.0.40"})
	if s.String() != "10,40" {
		t.Fatalf("reserved %q, want 10,40: the good entries stay reserved", s.String())
	}
	if len(errs) != 2 || errs[0].Index != 1 || errs[1].Index != 2 {
		t.Fatalf("errors %v, want entries 1 and 2", errs)
	}
}

// Each entry that is not plain is reported with its index and the fix, and reserves what
// it clearly names (fail closed).
func TestEachBadEntryNamesItsIndexAndTheFixAndReservesWhatItNames(t *testing.T) {
	v4 := netip.MustParsePrefix("10.0.0.0/24")
	mappedPool := netip.MustParsePrefix("::ffff:0:0/96")
	cases := []struct {
		name, entry  string
		want         string // the error, "" for a plain entry
		v4, inMapped string // what it reserves in 10.0.0.0/24 and in ::ffff:0:0/96 (offsets)
	}{
		{"an address", "10.0.0.10", "", "10", ""},
		{"a range", "10.0.0.20-10.0.0.30", "", "20-30", ""},
		{"spaces around", " 10.0.0.20 - 10.0.0.21 ", "", "20-21", ""},
		{"a reversed range", "10.0.0.30-10.0.0.20", "spec.ips[0]: range 10.0.0.30-10.0.0.20 is reversed: write 10.0.0.20-10.0.0.30", "20-30", ""},
		{"a reversed IPv6 range", "fd00::30-fd00::20", "spec.ips[0]: range fd00::30-fd00::20 is reversed: write fd00::20-fd00::30", "", ""},
		{"an IPv4-mapped address", "::ffff:10.0.0.10", "spec.ips[0]: ::ffff:10.0.0.10 is an IPv4-mapped IPv6 address, which reserves the IPv4 address: write 10.0.0.10", "10", "167772170"},
		{"an IPv4-mapped range", "::ffff:10.0.0.12-10.0.0.11", "write 10.0.0.11-10.0.0.12", "11-12", ""},
		{"a zone", "fe80::1%eth0", "spec.ips[0]: fe80::1%eth0 carries an interface zone, which addresses of a pool never have: write fe80::1", "", ""},
		{"not an address", "10.0.0.300", `spec.ips[0]: "10.0.0.300" is neither an IP address nor a range: write an address`, "", ""},
		{"a CIDR", "10.0.0.0/28", "is neither an IP address nor a range", "", ""},
		{"mixed families", "10.0.0.1-fd00::1", "spec.ips[0]: range 10.0.0.1-fd00::1 mixes IPv4 and IPv6: write one entry per family", "", ""},
		{"empty", "", "is neither an IP address nor a range", "", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			set, errs := ClipReservations(v4, []string{c.entry})
			switch {
			case c.want == "" && len(errs) > 0:
				t.Fatalf("refused: %v", errs)
			case c.want != "" && (len(errs) != 1 || !strings.Contains(errs[0].Error(), c.want)):
				t.Fatalf("errors %v, want one saying %q", errs, c.want)
			}
			if set.String() != c.v4 {
				t.Fatalf("reserves %q of %s, want %q", set.String(), v4, c.v4)
			}
			if got, _ := ClipReservations(mappedPool, []string{c.entry}); got.String() != c.inMapped {
				t.Fatalf("reserves %q of %s, want %q", got.String(), mappedPool, c.inMapped)
			}
		})
	}
}
