package ipamplugin

import (
	"encoding/json"
	"net/netip"
	"testing"

	"github.com/underpool/underpool/netplan"
)

func dualStack() netplan.Allocation {
	return netplan.Allocation{
		Addresses: []netplan.Address{
			{Prefix: netip.MustParsePrefix("10.250.1.5/24"), Gateway: netip.MustParseAddr("10.250.1.1"), Pool: "v4"},
			{Prefix: netip.MustParsePrefix("fd00:250::5/64"), Gateway: netip.MustParseAddr("fd00:250::1"), Pool: "v6"},
		},
		Routes: []netplan.Route{{Dst: netip.MustParsePrefix("10.0.0.0/8"), Gw: netip.MustParseAddr("10.250.1.254")}},
	}
}

// The IPAM-only plugin's result, exactly: the calling plugin installs what it lists.
func TestIPAMResultExactly(t *testing.T) {
	cases := []struct {
		name         string
		defaultRoute bool
		want         string
	}{
		{"with default routes", true, `{"cniVersion":"1.1.0","ips":[{"address":"10.250.1.5/24","gateway":"10.250.1.1"},{"address":"fd00:250::5/64","gateway":"fd00:250::1"}],` +
			`"routes":[{"dst":"0.0.0.0/0","gw":"10.250.1.1"},{"dst":"::/0","gw":"fd00:250::1"},{"dst":"10.0.0.0/8","gw":"10.250.1.254"}]}`},
		{"defaultRoute false", false, `{"cniVersion":"1.1.0","ips":[{"address":"10.250.1.5/24","gateway":"10.250.1.1"},{"address":"fd00:250::5/64","gateway":"fd00:250::1"}],` +
			`"routes":[{"dst":"10.0.0.0/8","gw":"10.250.1.254"}]}`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := json.Marshal(Result(dualStack(), c.defaultRoute))
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != c.want {
				t.Fatalf("result\n got %s\nwant %s", got, c.want)
			}
		})
	}
}

// TestOnlyTheInterfaceThePodNamedGetsTheDefaultRoute: with default-route-nic, a plain
// conflist's interface gets the default routes only if it is the one named.
func TestOnlyTheInterfaceThePodNamedGetsTheDefaultRoute(t *testing.T) {
	alloc := dualStack()
	for _, c := range []struct {
		named, ifName string
		allowed, want bool
	}{
		{"", "net1", true, true}, {"net1", "net1", true, true}, {"net2", "net1", true, false},
		{"eth0", "net1", true, false}, {"net1", "net1", false, false},
	} {
		alloc.DefaultRouteInterface = c.named
		if got := holdsDefault(c.allowed, alloc, c.ifName); got != c.want {
			t.Errorf("named %q, interface %s, defaultRoute %v: holds = %v, want %v", c.named, c.ifName, c.allowed, got, c.want)
		}
	}
}
