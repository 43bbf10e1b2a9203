package netplan

import (
	"net/netip"
	"strings"
	"testing"
)

func addr(t *testing.T, cidr, gw string) Address {
	t.Helper()
	a := Address{Prefix: netip.MustParsePrefix(cidr)}
	if gw != "" {
		a.Gateway = netip.MustParseAddr(gw)
	}
	return a
}

func render(p Plan) string {
	var out []string
	for _, e := range p.Routes {
		out = append(out, e.String())
	}
	for _, r := range p.Rules {
		out = append(out, r.String())
	}
	return strings.Join(out, "; ")
}

func TestBuildDefaultHolderAndOwnTable(t *testing.T) {
	in := Intent{IfName: "net2", Table: 102,
		Addresses: []Address{addr(t, "10.250.2.5/24", "10.250.2.1"), addr(t, "fd00:250:0:2::5/64", "fd00:250:0:2::1")},
		Routes:    []Route{mustRoute(t, "10.0.0.0/8", "10.250.2.254")},
	}
	cases := []struct {
		name               string
		default4, default6 bool
		want               string
	}{
		{"holds neither default", false, false,
			"10.0.0.0/8 via 10.250.2.254; 10.250.2.0/24 table 102; fd00:250:0:2::/64 table 102; 10.0.0.0/8 via 10.250.2.254 table 102; " +
				"0.0.0.0/0 via 10.250.2.1 table 102; ::/0 via fd00:250:0:2::1 table 102; from 10.250.2.5/32 lookup 102; from fd00:250:0:2::5/128 lookup 102"},
		{"holds the IPv4 default", true, false,
			"10.0.0.0/8 via 10.250.2.254; 0.0.0.0/0 via 10.250.2.1; 10.250.2.0/24 table 102; fd00:250:0:2::/64 table 102; 10.0.0.0/8 via 10.250.2.254 table 102; " +
				"0.0.0.0/0 via 10.250.2.1 table 102; ::/0 via fd00:250:0:2::1 table 102; from 10.250.2.5/32 lookup 102; from fd00:250:0:2::5/128 lookup 102"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			in := in
			in.Default4, in.Default6 = c.default4, c.default6
			p, err := Build(in)
			if err != nil {
				t.Fatal(err)
			}
			if got := render(p); got != c.want {
				t.Fatalf("plan\n got %s\nwant %s", got, c.want)
			}
		})
	}
}

func TestBuildExplicitDefaultRouteWinsOverGateway(t *testing.T) {
	p, err := Build(Intent{IfName: "net1", Default4: true,
		Addresses: []Address{addr(t, "10.250.1.5/24", "10.250.1.1")},
		Routes:    []Route{mustRoute(t, "0.0.0.0/0", "10.250.1.254")}})
	if err != nil {
		t.Fatal(err)
	}
	if got := render(p); got != "0.0.0.0/0 via 10.250.1.254" {
		t.Fatalf("got %s", got)
	}
	p, _ = Build(Intent{IfName: "net1", Addresses: []Address{addr(t, "10.250.1.5/24", "10.250.1.1")},
		Routes: []Route{mustRoute(t, "0.0.0.0/0", "10.250.1.254")}})
	if got := render(p); got != "" {
		t.Fatalf("an interface not holding the default got %s", got)
	}
}

func TestBuildRejectsOffSubnetGateway(t *testing.T) {
	_, err := Build(Intent{IfName: "net1", Addresses: []Address{addr(t, "10.250.1.5/24", "")},
		Routes: []Route{mustRoute(t, "10.0.0.0/8", "10.250.9.1")}})
	if err == nil || !strings.Contains(err.Error(), "10.250.9.1") || !strings.Contains(err.Error(), "net1") {
		t.Fatalf("want an error naming the gateway and interface, got %v", err)
	}
}

func TestTableFor(t *testing.T) {
	for name, want := range map[string]int{"eth0": 100, "net1": 101, "net12": 112} {
		if got := TableFor(name, 0); got != want {
			t.Errorf("TableFor(%s) = %d, want %d", name, got, want)
		}
	}
	if got := TableFor("net3", 200); got != 203 {
		t.Errorf("base 200: %d", got)
	}
	a, b := TableFor("uplink", 100), TableFor("uplink", 100)
	if a != b || a < 1100 || a >= 2100 {
		t.Errorf("name without a number: %d, %d", a, b)
	}
}
