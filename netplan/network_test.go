package netplan

import (
	"strings"
	"testing"
)

func networkRoutes(t *testing.T, specs ...RouteSpec) []Route {
	t.Helper()
	routes, errs := ParseNetworkRoutes("routes", specs)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	return routes
}

// A network's route is planned on its interface, in the main table and, with policy
// routing, in the interface's own table; a pool's route to the same destination wins.
func TestANetworkRouteIsPlannedUnderThePoolsRoutes(t *testing.T) {
	alloc := Allocation{
		Addresses: []Address{addr(t, "10.250.2.5/24", "10.250.2.1")},
		Routes:    []Route{mustRoute(t, "10.0.0.0/8", "10.250.2.254")},
	}
	network := networkRoutes(t, RouteSpec{Dst: "192.168.0.0/16", Gw: "10.250.2.253"}, RouteSpec{Dst: "10.0.0.0/8", Gw: "10.250.2.252"})
	merged, err := alloc.WithNetworkRoutes(network)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name  string
		table int
		want  string
	}{
		{"without policy routing", 0, "192.168.0.0/16 via 10.250.2.253; 10.0.0.0/8 via 10.250.2.254; 0.0.0.0/0 via 10.250.2.1"},
		{"with policy routing", 102, "192.168.0.0/16 via 10.250.2.253; 10.0.0.0/8 via 10.250.2.254; 0.0.0.0/0 via 10.250.2.1; " +
			"10.250.2.0/24 table 102; 192.168.0.0/16 via 10.250.2.253 table 102; 10.0.0.0/8 via 10.250.2.254 table 102; " +
			"0.0.0.0/0 via 10.250.2.1 table 102; from 10.250.2.5/32 lookup 102"},
	} {
		t.Run(c.name, func(t *testing.T) {
			in := merged.Intent("net2", c.table)
			in.Default4 = true
			p, err := Build(in)
			if err != nil {
				t.Fatal(err)
			}
			if got := render(p); got != c.want {
				t.Fatalf("plan\n got %s\nwant %s", got, c.want)
			}
		})
	}
	if len(alloc.Routes) != 1 || alloc.Routes[0].Gw.String() != "10.250.2.254" {
		t.Fatalf("the allocation's own routes changed: %v", alloc.Routes)
	}
}

// A network route of a family the attachment has no address of is refused naming the
// route and the fix; a network without routes leaves the allocation as it is.
func TestANetworkRouteOfAFamilyTheAttachmentLacksIsRefused(t *testing.T) {
	alloc := Allocation{Addresses: []Address{addr(t, "10.250.2.5/24", "10.250.2.1")}}
	_, err := alloc.WithNetworkRoutes(networkRoutes(t, RouteSpec{Dst: "10.1.0.0/16"}, RouteSpec{Dst: "fd00:1::/48", Gw: "fd00:250::1"}))
	want := "routes[1] fd00:1::/48 via fd00:250::1: the attachment has no IPv6 address (it holds [10.250.2.5]): give the network an IPv6 pool, or remove the route"
	if err == nil || err.Error() != want {
		t.Fatalf("error %v, want %q", err, want)
	}
	same, err := alloc.WithNetworkRoutes(nil)
	if err != nil || len(same.Routes) != 0 {
		t.Fatalf("no network routes: %v, %v", same.Routes, err)
	}
}

// Each bad network route is refused on its own, naming its index and the fix.
func TestParseNetworkRoutesNamesEachBadRoute(t *testing.T) {
	_, errs := ParseNetworkRoutes("spec.routes", []RouteSpec{
		{Dst: "10.0.0.0/8", Gw: "10.250.1.1"},
		{Dst: "10.0.0.0"},
		{Dst: "10.0.0.1/8"},
		{Dst: "fd00::/8", Gw: "10.250.1.1"},
		{Dst: "172.16.0.0/12", Gw: "224.0.0.1"},
		{Dst: "fd00::/8", Gw: "fe80::1%eth0"},
		{Dst: "192.168.0.0/16", Gw: "0.0.0.0"},
		{Dst: "192.168.1.0/24", Gw: "gw"},
	})
	want := []string{
		`spec.routes[1]: dst "10.0.0.0" is not a CIDR`,
		"spec.routes[2]: dst 10.0.0.0/8 is spec.routes[0]'s too: keep one route per destination",
		"spec.routes[3]: gw 10.250.1.1 and dst fd00::/8 are of different families",
		"spec.routes[4]: gw 224.0.0.1 is not a unicast address",
		"spec.routes[5]: gw fe80::1%eth0 has a zone",
		"spec.routes[6]: gw 0.0.0.0 is not a unicast address",
		`spec.routes[7]: gw "gw" is not an IP address`,
	}
	if len(errs) != len(want) {
		t.Fatalf("got %d errors %v, want %d", len(errs), errs, len(want))
	}
	for i, w := range want {
		if !strings.Contains(errs[i].Error(), w) {
			t.Errorf("error %d %q, want %q", i, errs[i], w)
		}
	}
}
