package chain

import (
	"net/netip"
	"reflect"
	"testing"

	current "github.com/containernetworking/cni/pkg/types/100"

	"github.com/underpool/underpool/chain/ipamplugin"
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
		IPs: ipamplugin.IPs(alloc.Addresses, &idx), Routes: ipamplugin.Routes(plan.Routes)}
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
