package chain

import (
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/containernetworking/plugins/pkg/testutils"
	"github.com/vishvananda/netlink"

	"github.com/underpool/underpool/netplan"
)

// The network's routes are read as written, parsed once; a network without any has none.
func TestLoadConfReadsTheNetworksRoutes(t *testing.T) {
	conf, err := LoadConf([]byte(`{"delegate":{"type":"macvlan"},"ipam":{"ipv4Pools":["a"]},
		"routes":[{"dst":"192.168.0.0/16","gw":"10.250.1.253"},{"dst":"fd00:1::/48"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range conf.routes {
		got = append(got, r.String())
	}
	if want := []string{"192.168.0.0/16 via 10.250.1.253", "fd00:1::/48"}; !slices.Equal(got, want) {
		t.Fatalf("routes %v, want %v", got, want)
	}
	conf, err = LoadConf([]byte(`{"delegate":{"type":"macvlan"},"ipam":{"ipv4Pools":["a"]}}`))
	if err != nil || conf.routes != nil {
		t.Fatalf("no routes: %v, %v", conf.routes, err)
	}
}

// A bad route is refused at LoadConf naming its index, what is wrong and the fix, and
// no config comes back to be half used.
func TestLoadConfRefusesABadRouteNamingIt(t *testing.T) {
	for name, c := range map[string]struct{ routes, want string }{
		"dst not a CIDR":       {`[{"dst":"10.0.0.0"}]`, `routes[0]: dst "10.0.0.0" is not a CIDR (e.g. 10.0.0.0/8)`},
		"gw not an address":    {`[{"dst":"10.0.0.0/8"},{"dst":"10.1.0.0/16","gw":"router"}]`, `routes[1]: gw "router" is not an IP address`},
		"gw of another family": {`[{"dst":"fd00::/8","gw":"10.250.1.1"}]`, "routes[0]: gw 10.250.1.1 and dst fd00::/8 are of different families"},
		"gw multicast":         {`[{"dst":"10.0.0.0/8","gw":"224.0.0.5"}]`, "routes[0]: gw 224.0.0.5 is not a unicast address: name the next hop"},
		"one dst twice":        {`[{"dst":"10.0.0.0/8"},{"dst":"10.9.0.0/8","gw":"10.250.1.1"}]`, "routes[1]: dst 10.0.0.0/8 is routes[0]'s too: keep one route per destination"},
		"not a list":           {`{"dst":"10.0.0.0/8"}`, "network config is not valid JSON"},
	} {
		t.Run(name, func(t *testing.T) {
			conf, err := LoadConf([]byte(`{"delegate":{"type":"macvlan"},"ipam":{"ipv4Pools":["a"]},"routes":` + c.routes + `}`))
			if err == nil || !strings.Contains(err.Error(), c.want) || conf != nil {
				t.Fatalf("conf %v, error %v; want none and an error saying %q", conf, err, c.want)
			}
		})
	}
}

// The network's route reaches the pod: configureRoutes installs it in the main table
// and, with policy routing, in the interface's own table; a pool's route to the same
// destination wins over the network's.
func TestTheNetworksRouteIsInstalledInThePod(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("network namespaces need root")
	}
	for _, c := range []struct {
		name   string
		policy string
		table  int
	}{{"with policy routing", `true`, netplan.TableFor("net1", 0)}, {"without policy routing", `false`, 0}} {
		t.Run(c.name, func(t *testing.T) {
			conf, err := LoadConf([]byte(`{"delegate":{"type":"macvlan"},"ipam":{"ipv4Pools":["a"]},"routing":{"policyRouting":` + c.policy + `},
				"routes":[{"dst":"192.168.0.0/16","gw":"10.250.1.253"},{"dst":"10.0.0.0/8","gw":"10.250.1.252"}]}`))
			if err != nil {
				t.Fatal(err)
			}
			alloc, err := conf.podAllocation(netplan.Allocation{
				Addresses: []netplan.Address{{Prefix: netip.MustParsePrefix("10.250.1.5/24"), Gateway: netip.MustParseAddr("10.250.1.1")}},
				Routes:    []netplan.Route{{Dst: netip.MustParsePrefix("10.0.0.0/8"), Gw: netip.MustParseAddr("10.250.1.254")}}})
			if err != nil {
				t.Fatal(err)
			}
			inPodWithLink(t, "net1", "10.250.1.5/24", func() {
				if _, _, err := configureRoutes(conf, "net1", alloc); err != nil {
					t.Fatal(err)
				}
				want := []string{"192.168.0.0/16 via 10.250.1.253", "10.0.0.0/8 via 10.250.1.254"}
				requireRoutes(t, 0, want)
				if c.table != 0 {
					requireRoutes(t, c.table, want)
				}
			})
		})
	}
}

// inPodWithLink runs fn in a new netns holding an up veth end ifName with addr.
func inPodWithLink(t *testing.T, ifName, addr string, fn func()) {
	t.Helper()
	podNS, err := testutils.NewNS()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = podNS.Close(); _ = testutils.UnmountNS(podNS) })
	err = podNS.Do(func(ns.NetNS) error {
		link := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: ifName}, PeerName: ifName + "p"}
		if err := netlink.LinkAdd(link); err != nil {
			return err
		}
		a, err := netlink.ParseAddr(addr)
		if err != nil {
			return err
		}
		if err := netlink.AddrAdd(link, a); err != nil {
			return err
		}
		for _, name := range []string{ifName, ifName + "p"} {
			l, err := netlink.LinkByName(name)
			if err == nil {
				err = netlink.LinkSetUp(l)
			}
			if err != nil {
				return err
			}
		}
		fn()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// requireRoutes fails unless table (0: main) holds each "dst via gw" of want.
func requireRoutes(t *testing.T, table int, want []string) {
	t.Helper()
	filter, mask := &netlink.Route{Table: table}, uint64(0)
	if table != 0 {
		mask = netlink.RT_FILTER_TABLE
	}
	routes, err := netlink.RouteListFiltered(netlink.FAMILY_V4, filter, mask)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range routes {
		if r.Dst != nil && r.Gw != nil {
			got = append(got, r.Dst.String()+" via "+r.Gw.String())
		}
	}
	for _, w := range want {
		if !slices.Contains(got, w) {
			t.Errorf("table %d holds %v, not %s", table, got, w)
		}
	}
}
