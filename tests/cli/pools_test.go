package cli

import (
	"strings"
	"testing"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/core/apppool"
	"github.com/underpool/underpool/kubectlplugin"
)

func TestPools(t *testing.T) {
	pool(t, "pp-a", poolSpec{IPPoolSpec: v1.IPPoolSpec{Subnet: "10.252.1.0/24", Gateway: "10.252.1.1", Default: true},
		allocated: "2-51", quarantined: []string{"10.252.1.100", "10.252.1.101"}})
	pool(t, "pp-app", poolSpec{IPPoolSpec: v1.IPPoolSpec{Subnet: "10.252.2.0/24", IPs: []string{"10.252.2.10-10.252.2.13"}}, allocated: "10-13",
		annotations: map[string]string{apppool.AnnotationOwner: "StatefulSet/shop/db"}, labels: map[string]string{apppool.LabelOwnerHash: "abc"}})
	pool(t, "pp-reserved", poolSpec{IPPoolSpec: v1.IPPoolSpec{Subnet: "10.252.3.0/29"}})
	create(t, &v1.ReservedIP{ObjectMeta: objMeta("pp-res"), Spec: v1.ReservedIPSpec{IPs: []string{"10.252.3.1-10.252.3.2"}}})
	// two pools covering one range: the shared addresses are handed out by neither
	pool(t, "pp-over-a", poolSpec{IPPoolSpec: v1.IPPoolSpec{Subnet: "10.252.4.0/24", IPs: []string{"10.252.4.10-10.252.4.29"}}})
	pool(t, "pp-over-b", poolSpec{IPPoolSpec: v1.IPPoolSpec{Subnet: "10.252.4.0/24", IPs: []string{"10.252.4.20-10.252.4.39"}}})
	pool(t, "pp-corrupt", poolSpec{IPPoolSpec: v1.IPPoolSpec{Subnet: "10.252.5.0/24"}, allocated: "7-3"})

	var report kubectlplugin.PoolsReport
	pluginJSON(t, &report, "pools")
	got := map[string]*kubectlplugin.Capacity{}
	for _, p := range report.Pools {
		got[p.Name] = p
	}
	for _, tc := range []struct {
		pool                                                  string
		total, allocated, quarantined, reserved, shared, free uint64
		used                                                  float64
		owner, problem                                        string
	}{
		{pool: "pp-a", total: 253, allocated: 50, quarantined: 2, free: 201, used: 19.8},
		{pool: "pp-app", total: 4, allocated: 4, free: 0, used: 100, owner: "StatefulSet/shop/db"},
		{pool: "pp-reserved", total: 6, reserved: 2, free: 4},
		{pool: "pp-over-a", total: 20, shared: 10, free: 10},
		{pool: "pp-over-b", total: 20, shared: 10, free: 10},
		{pool: "pp-corrupt", total: 254, problem: "state.allocated"},
	} {
		t.Run(tc.pool, func(t *testing.T) {
			p := got[tc.pool]
			if p == nil {
				t.Fatalf("pool %s missing from %+v", tc.pool, report.Pools)
			}
			if p.Total != tc.total || p.Allocated != tc.allocated || p.Quarantined != tc.quarantined || p.Reserved != tc.reserved ||
				p.Shared != tc.shared || p.Free != tc.free || p.UsedPercent != tc.used || p.AppPoolOwner != tc.owner ||
				(tc.problem == "") != (p.Problem == "") || !strings.Contains(p.Problem, tc.problem) {
				t.Errorf("got %+v; want %+v", *p, tc)
			}
		})
	}
	out, err := plugin(t, "pools")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("pools:\n%s", out)
	for _, want := range []string{"NAME", "QUARANTINED", "pp-a", "10.252.1.0/24", "19.8%", "StatefulSet/shop/db", "exhausted", "2 reserved"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
}
