package netplan

import (
	"net/netip"
	"strings"
	"testing"
)

func TestMACFromIP(t *testing.T) {
	cases := map[string]string{"10.250.3.7": "0a:58:0a:fa:03:07", "fd00:250::1:2:304": "0a:58:00:02:03:04"}
	for ip, want := range cases {
		mac, err := MACFromIP("0a:58", netip.MustParseAddr(ip))
		if err != nil || mac.String() != want {
			t.Errorf("MACFromIP(%s) = %v, %v; want %s", ip, mac, err, want)
		}
	}
	for _, bad := range []string{"0a", "0a:58:01", "zz:00", "01:00"} {
		if _, err := ParseMACPrefix(bad); err == nil || !strings.Contains(err.Error(), bad) {
			t.Errorf("ParseMACPrefix(%q) = %v, want an error naming it", bad, err)
		}
	}
}
