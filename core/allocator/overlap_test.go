package allocator

import (
	"net/netip"
	"testing"

	v1 "github.com/underpool/underpool/api/v1"
)

func TestFootprintsShare(t *testing.T) {
	fp := func(spec v1.IPPoolSpec) Footprint {
		f, ok := FootprintOf("p", &spec)
		if !ok {
			t.Fatalf("%+v: no footprint", spec)
		}
		return f
	}
	a := fp(v1.IPPoolSpec{Subnet: "10.0.0.0/24", IPs: []string{"10.0.0.10-10.0.0.20"}})
	cases := []struct {
		name string
		b    Footprint
		want string // "" for none
	}{
		{"disjoint ranges", fp(v1.IPPoolSpec{Subnet: "10.0.0.0/24", IPs: []string{"10.0.0.21-10.0.0.30"}}), ""},
		{"overlapping ranges", fp(v1.IPPoolSpec{Subnet: "10.0.0.0/24", IPs: []string{"10.0.0.15-10.0.0.30"}}), "10.0.0.15"},
		{"excluded overlap", fp(v1.IPPoolSpec{Subnet: "10.0.0.0/24", IPs: []string{"10.0.0.5-10.0.0.10"}, ExcludeIPs: []string{"10.0.0.10"}}), ""},
		{"gateway is not shared", fp(v1.IPPoolSpec{Subnet: "10.0.0.0/24", IPs: []string{"10.0.0.20"}, Gateway: "10.0.0.20"}), ""},
		{"wider prefix", fp(v1.IPPoolSpec{Subnet: "10.0.0.0/16", IPs: []string{"10.0.0.18-10.0.1.5"}}), "10.0.0.18"},
		{"narrower prefix", fp(v1.IPPoolSpec{Subnet: "10.0.0.16/28"}), "10.0.0.17"},
		{"unparsable spec covers its subnet", fp(v1.IPPoolSpec{Subnet: "10.0.0.0/25", IPs: []string{"10.9.9.9"}}), "10.0.0.10"},
		{"other family", fp(v1.IPPoolSpec{Subnet: "fd00::/64"}), ""},
	}
	for _, c := range cases {
		got, ok := FirstShared(a, c.b)
		if (c.want == "") == ok || (ok && got != netip.MustParseAddr(c.want)) {
			t.Errorf("%s: FirstShared = %v %v, want %q", c.name, got, ok, c.want)
		}
		got2, ok2 := FirstShared(c.b, a)
		if ok2 != ok || got2 != got {
			t.Errorf("%s: not symmetric: %v %v", c.name, got2, ok2)
		}
	}
	// an IPv6 /48 does not parse as a pool (over 64 host bits) and still covers a /64 in it
	wide := fp(v1.IPPoolSpec{Subnet: "fd00:1::/48"})
	in := wide.In(netip.MustParsePrefix("fd00:1:0:5::/64"))
	if in.Count() != ^uint64(0) {
		t.Errorf("unparsable /48 over a /64: %v", in)
	}
	if _, ok := FootprintOf("p", &v1.IPPoolSpec{Subnet: "nope"}); ok {
		t.Error("an unparsable subnet has no footprint")
	}
}
