package netplan

import (
	"net/netip"
	"strings"
	"testing"
)

func TestMACFromIP(t *testing.T) {
	mac := func(ip string) string {
		t.Helper()
		m, err := MACFromIP("0a:58", netip.MustParseAddr(ip))
		if err != nil {
			t.Fatalf("MACFromIP(%s): %v", ip, err)
		}
		return m.String()
	}
	t.Run("IPv4 is readable in the MAC", func(t *testing.T) {
		if got := mac("10.250.3.7"); got != "0a:58:0a:fa:03:07" {
			t.Fatalf("got %s", got)
		}
		if got := mac("::ffff:10.250.3.7"); got != "0a:58:0a:fa:03:07" {
			t.Fatalf("IPv4-mapped: got %s", got)
		}
	})
	t.Run("IPv6 is stable and keeps the prefix", func(t *testing.T) {
		a, b := mac("fd00:250::1:2:304"), mac("fd00:250::1:2:304")
		if a != b || !strings.HasPrefix(a, "0a:58:") {
			t.Fatalf("got %s then %s", a, b)
		}
	})
	t.Run("IPv6 addresses alike in their last four bytes differ", func(t *testing.T) {
		seen := map[string]string{}
		for _, ip := range []string{"fd00:1::5", "fd00:2::5", "fd00:1:0:1::5", "2001:db8::5", "fd00:1::1:0:0:5"} {
			m := mac(ip)
			if other, dup := seen[m]; dup {
				t.Fatalf("%s and %s share MAC %s", ip, other, m)
			}
			seen[m] = ip
		}
	})
	for _, bad := range []string{"0a", "0a:58:01", "zz:00", "01:00"} {
		if _, err := ParseMACPrefix(bad); err == nil || !strings.Contains(err.Error(), bad) {
			t.Errorf("ParseMACPrefix(%q) = %v, want an error naming it", bad, err)
		}
	}
}
