package netplan

import (
	"fmt"
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
	cases := []struct {
		name   string
		ifName string
		base   int
		want   int // 0: a hashed table, base+1000 and up
	}{
		{"netN is base+N", "net1", 0, 101},
		{"two digits", "net12", 0, 112},
		{"another base", "net3", 200, 203},
		{"net0", "net0", 0, 100},
		{"eth1 is hashed, not net1's", "eth1", 0, 0},
		{"eth0 is hashed", "eth0", 0, 0},
		{"a leading zero is hashed, not net1's", "net01", 0, 0},
		{"a sign is hashed", "net+1", 0, 0},
		{"no number", "uplink", 0, 0},
		{"past 999", "net1000", 0, 0},
		{"would be the default table 253", "net153", 0, 0},
		{"would be the main table 254", "net154", 0, 0},
		{"would be the local table 255", "net5", 250, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := TableFor(c.ifName, c.base)
			if again := TableFor(c.ifName, c.base); again != got {
				t.Fatalf("TableFor(%s) not stable: %d, %d", c.ifName, got, again)
			}
			base := c.base
			if base == 0 {
				base = DefaultTableBase
			}
			switch {
			case c.want != 0 && got != c.want:
				t.Fatalf("TableFor(%s, %d) = %d, want %d", c.ifName, c.base, got, c.want)
			case c.want == 0 && (got < base+1000 || got >= base+1000+hashedTables):
				t.Fatalf("TableFor(%s, %d) = %d, want a hashed table in [%d, %d)", c.ifName, c.base, got, base+1000, base+1000+hashedTables)
			}
		})
	}
	t.Run("names a pod may combine get different tables", func(t *testing.T) {
		seen := map[int]string{}
		var names []string
		for i := 0; i < 1000; i++ {
			names = append(names, fmt.Sprintf("net%d", i))
		}
		for i := 0; i < 16; i++ {
			names = append(names, fmt.Sprintf("eth%d", i), fmt.Sprintf("ib%d", i), fmt.Sprintf("ens%df0", i),
				fmt.Sprintf("ens%df1", i), fmt.Sprintf("net0%d", i), fmt.Sprintf("vf%d", i))
		}
		for _, n := range names {
			tb := TableFor(n, 0)
			if other, dup := seen[tb]; dup {
				t.Fatalf("%s and %s share table %d", n, other, tb)
			}
			if reservedTable(tb) {
				t.Fatalf("%s gets the kernel's reserved table %d", n, tb)
			}
			seen[tb] = n
		}
	})
}

// TestThePodsChoiceOfDefaultRouteHolderWinsOverTheNetworks: default-route-nic, when the
// pod has it, names the holder whatever routing.defaultRouteInterface says.
func TestThePodsChoiceOfDefaultRouteHolderWinsOverTheNetworks(t *testing.T) {
	for _, c := range []struct{ pod, network, want string }{
		{"", "", ""}, {"", "net1", "net1"}, {"net2", "net1", "net2"}, {"eth0", "", "eth0"},
	} {
		if got := (Allocation{DefaultRouteInterface: c.pod}).DefaultRouteHolder(c.network); got != c.want {
			t.Errorf("pod %q, network %q: holder %q, want %q", c.pod, c.network, got, c.want)
		}
	}
}
