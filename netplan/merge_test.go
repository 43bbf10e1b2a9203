package netplan

import (
	"net/netip"
	"strings"
	"testing"
)

func mustRoute(t *testing.T, dst, gw string) Route {
	t.Helper()
	r, err := ParseRoute(dst, gw, "test")
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestMergeLaterLevelWinsPerDestination(t *testing.T) {
	subnet := []Route{mustRoute(t, "10.0.0.0/8", "10.250.1.1"), mustRoute(t, "172.16.0.0/12", "10.250.1.1")}
	pool := []Route{mustRoute(t, "10.0.0.0/8", "10.250.1.254")}
	pod := []Route{mustRoute(t, "192.168.0.0/16", ""), mustRoute(t, "172.16.0.0/12", "10.250.1.2")}
	got := Merge(subnet, pool, pod)
	want := []string{"10.0.0.0/8 via 10.250.1.254", "172.16.0.0/12 via 10.250.1.2", "192.168.0.0/16 via invalid IP"}
	if len(got) != len(want) {
		t.Fatalf("got %v", got)
	}
	for i, r := range got {
		if s := r.Dst.String() + " via " + r.Gw.String(); s != want[i] {
			t.Errorf("route %d = %s, want %s", i, s, want[i])
		}
	}
}

func TestParseNamesTheField(t *testing.T) {
	for _, c := range [][2]string{{"10.0.0.0", ""}, {"10.0.0.0/8", "x"}, {"10.0.0.0/8", "fd00:250::1"}} {
		_, err := ParseRoute(c[0], c[1], "IPPool p spec.routes[0]")
		if err == nil || !strings.Contains(err.Error(), "IPPool p spec.routes[0]") {
			t.Errorf("ParseRoute(%q,%q) = %v", c[0], c[1], err)
		}
	}
	if r := mustRoute(t, "10.1.2.3/8", ""); r.Dst != netip.MustParsePrefix("10.0.0.0/8") {
		t.Errorf("dst not masked: %v", r.Dst)
	}
}

func TestHasFamily(t *testing.T) {
	a := Allocation{Addresses: []Address{{Prefix: netip.MustParsePrefix("10.250.1.5/24")}}}
	if !a.HasFamily(true) || a.HasFamily(false) {
		t.Fatalf("an IPv4-only allocation: HasFamily(4)=%v HasFamily(6)=%v", a.HasFamily(true), a.HasFamily(false))
	}
}
