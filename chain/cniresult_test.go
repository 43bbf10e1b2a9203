package chain

import (
	"encoding/json"
	"net/netip"
	"reflect"
	"testing"

	current "github.com/containernetworking/cni/pkg/types/100"

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
			got, err := json.Marshal(ipamResult(dualStack(), c.defaultRoute))
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != c.want {
				t.Fatalf("result\n got %s\nwant %s", got, c.want)
			}
		})
	}
}

// CHECK rebuilds from the ADD result the plan ADD applied: routes and, with policy
// routing, one rule per address.
func TestPlanFromResultIsThePlanADDApplied(t *testing.T) {
	conf := &NetConf{}
	alloc := dualStack()
	plan, err := netplan.Build(alloc.Intent("net1", conf.Routing.table("net1")))
	if err != nil {
		t.Fatal(err)
	}
	idx := 0
	result := &current.Result{Interfaces: []*current.Interface{{Name: "net1", Sandbox: "/var/run/netns/p"}},
		IPs: cniIPs(alloc.Addresses, &idx), Routes: cniRoutes(plan.Routes)}
	got := planFromResult(conf, "net1", result)
	if !reflect.DeepEqual(got.Routes, stripSrc(plan.Routes)) || !reflect.DeepEqual(got.Rules, plan.Rules) {
		t.Fatalf("from the result\n got %v %v\nwant %v %v", got.Routes, got.Rules, plan.Routes, plan.Rules)
	}
}

// stripSrc drops what a CNI route cannot carry (the preferred source); CHECK does not
// compare it.
func stripSrc(routes []netplan.Route) []netplan.Route {
	out := make([]netplan.Route, len(routes))
	for i, r := range routes {
		r.Src = netip.Addr{}
		out[i] = r
	}
	return out
}
