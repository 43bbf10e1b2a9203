package rpc

import (
	"encoding/json"
	"net/netip"
	"reflect"
	"strings"
	"testing"

	"github.com/underpool/underpool/netplan"
)

// The JSON of v1 answers is fixed: a plugin of the previous release reads it.
func TestAllocateResponseWireFormatIsV1(t *testing.T) {
	alloc := netplan.Allocation{
		Addresses: []netplan.Address{
			{Prefix: netip.MustParsePrefix("10.250.1.5/24"), Gateway: netip.MustParseAddr("10.250.1.1"), Pool: "v4", Vlan: 100},
			{Prefix: netip.MustParsePrefix("fd00:250::5/64"), Pool: "v6"},
		},
		Routes: []netplan.Route{
			{Dst: netip.MustParsePrefix("10.0.0.0/8"), Gw: netip.MustParseAddr("10.250.1.254")},
			{Dst: netip.MustParsePrefix("192.168.0.0/16")},
		},
		DefaultRouteInterface: "net2",
	}
	got, err := json.Marshal(NewAllocateResponse(alloc))
	if err != nil {
		t.Fatal(err)
	}
	want := `{"ips":[{"address":"10.250.1.5/24","gateway":"10.250.1.1","pool":"v4","vlan":100},{"address":"fd00:250::5/64","pool":"v6"}],` +
		`"routes":[{"dst":"10.0.0.0/8","gw":"10.250.1.254"},{"dst":"192.168.0.0/16"}],"defaultRouteInterface":"net2"}`
	if string(got) != want {
		t.Fatalf("wire\n got %s\nwant %s", got, want)
	}
	var resp AllocateResponse
	if err := json.Unmarshal(got, &resp); err != nil {
		t.Fatal(err)
	}
	back, err := resp.Allocation()
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, alloc) {
		t.Fatalf("round trip\n got %+v\nwant %+v", back, alloc)
	}
}

func TestAllocationNamesTheBadField(t *testing.T) {
	cases := []struct {
		name string
		resp AllocateResponse
		want string
	}{
		{"address without a prefix length", AllocateResponse{IPs: []IPConfig{{Address: "10.250.1.5", Pool: "p"}}}, "ips[0]: address \"10.250.1.5\" of pool p"},
		{"bad gateway", AllocateResponse{IPs: []IPConfig{{Address: "10.250.1.5/24", Gateway: "x", Pool: "p"}}}, "ips[0]: gateway \"x\" of pool p"},
		{"gateway of the other family", AllocateResponse{IPs: []IPConfig{{Address: "10.250.1.5/24", Gateway: "fd00::1", Pool: "p"}}}, "not of the family"},
		{"bad route", AllocateResponse{Routes: []Route{{Dst: "10.0.0.0"}}}, "ipamd answer routes[0]: dst"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if _, err := c.resp.Allocation(); err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want one containing %q", err, c.want)
			}
		})
	}
}
