package kubectlplugin

import (
	"bytes"
	"encoding/json"
	"net/netip"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/underpool/underpool/api/v1"
)

// capacities loads every pool's capacity from c, by name, and prints the pools table.
func capacities(t *testing.T, c client.Reader) (map[string]*Capacity, string) {
	t.Helper()
	pools, err := loadPools(t.Context(), c, now)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	poolsTable(&out, pools.order)
	return pools.byName, out.String()
}

func TestPoolsCountAllocatedQuarantinedReservedSharedAndFree(t *testing.T) {
	a := pool("a", "10.0.0.0/24", []string{"10.0.0.10-10.0.0.19"})
	aState := allocation(a, "10-11")
	aState.State.Quarantined = []v1.QuarantinedIP{
		{IP: "10.0.0.12", Until: metav1.NewTime(now.Add(time.Minute))},
		{IP: "10.0.0.13", Until: metav1.NewTime(now.Add(-time.Minute))}, // over: free again
	}
	b := pool("b", "10.0.0.0/24", []string{"10.0.0.18-10.0.0.30"})
	b.Spec.Default = true
	keep := &v1.ReservedIP{ObjectMeta: metav1.ObjectMeta{Name: "keep"}, Spec: v1.ReservedIPSpec{IPs: []string{"10.0.0.14"}}}
	full := pool("full", "10.0.1.0/30", nil)

	got, table := capacities(t, fakeAPI(t, a, aState, b, keep, full, allocation(full, "1-2")))

	if c := got["a"]; c.Total != 10 || c.Allocated != 2 || c.Quarantined != 1 || c.Reserved != 1 || c.Shared != 2 || c.Free != 4 || c.UsedPercent != 20 || c.Problem != "" {
		t.Errorf("pool a = %+v, want 10 total, 2 allocated, 1 quarantined, 1 reserved, 2 shared with b, 4 free, 20%% used", *c)
	}
	for _, want := range [][]string{
		{"NAME", "SUBNET", "TOTAL", "ALLOCATED", "QUARANTINED", "FREE", "USED", "DEFAULT", "OWNER", "NOTE"},
		{"a", "10.0.0.0/24", "10", "2", "1", "4", "20.0%", "false", "-", "1 reserved (ReservedIP); 2 shared with other pools (handed out by neither)"},
		{"b", "10.0.0.0/24", "13", "0", "0", "11", "0.0%", "true", "-", "2 shared with other pools"},
		{"full", "10.0.1.0/30", "2", "2", "0", "0", "100.0%", "false", "-", "exhausted"},
	} {
		if !hasRow(table, want...) {
			t.Errorf("the table has no row %q:\n%s", want, table)
		}
	}
}

func TestAPoolWhoseStateIsPastItsSubnetIsReportedNotCounted(t *testing.T) {
	corrupt, garbled := pool("corrupt", "10.1.0.0/24", nil), pool("garbled", "10.1.1.0/24", nil)
	got, table := capacities(t, fakeAPI(t, corrupt, allocation(corrupt, "3,4000"), garbled, allocation(garbled, "7-3")))

	for _, name := range []string{"corrupt", "garbled"} {
		c := got[name]
		if c.Allocated != 0 || c.Free != 0 || c.UsedPercent != 0 || !strings.Contains(c.Problem, "PoolAllocation "+name+" state.allocated") {
			t.Errorf("pool %s = %+v, want nothing counted and a problem naming its PoolAllocation's state.allocated", name, *c)
		}
	}
	if p := got["corrupt"].Problem; !strings.Contains(p, `"3,4000"`) || !strings.Contains(p, "outside subnet 10.1.0.0/24") {
		t.Errorf("problem of pool corrupt = %q, want the offset outside its subnet named", p)
	}
	if !hasRow(table, "corrupt", "10.1.0.0/24", "254", "0", "0", "0", "0.0%", "state.allocated") {
		t.Errorf("the table does not report pool corrupt's state:\n%s", table)
	}
}

// ipamd takes a pool whose state.allocated is corrupt at its widest, its whole subnet,
// for the overlap rule (ipamd/store/overlap.go withHeld): so must `pools`.
func TestAnotherPoolsCorruptStateMakesItsWholeSubnetShared(t *testing.T) {
	wide := pool("wide", "10.2.0.0/24", nil)
	narrow := pool("narrow", "10.2.0.128/25", []string{"10.2.0.200-10.2.0.210"})

	got, _ := capacities(t, fakeAPI(t, wide, narrow, allocation(narrow, "300")))

	if c := got["wide"]; c.Shared != 127 || c.Free != 127 {
		t.Errorf("pool wide = %+v, want 127 shared (10.2.0.128-254, all of narrow's subnet it covers) and 127 free", *c)
	}
}

func TestPoolsPrintsJSONAndRefusesAnUnknownFormat(t *testing.T) {
	a := pool("a", "10.0.0.0/24", nil)
	c := fakeAPI(t, a, allocation(a, "1"))
	out, err := runPlugin(t, c, "json", newPoolsCommand)
	if err != nil {
		t.Fatal(err)
	}
	var rep PoolsReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil || len(rep.Pools) != 1 || rep.Pools[0].Allocated != 1 {
		t.Errorf("pools -o json = %s (%v)", out, err)
	}
	if _, err := runPlugin(t, c, "wide", newPoolsCommand); err == nil || !strings.Contains(err.Error(), "use -o table, -o json or -o yaml") {
		t.Errorf("pools -o wide: %v", err)
	}
	out, err = runPlugin(t, fakeAPI(t), "", newPoolsCommand)
	if err != nil || !strings.Contains(out, "No IPPools found") {
		t.Errorf("pools with no pool: %v\n%s", err, out)
	}
}

// A PoolAllocation left by an earlier pool of the same name (another UID) is never served:
// ipamd starts the new pool afresh. pools, who and gc count nothing of it, as of a pool
// with no PoolAllocation at all.
func TestAnEarlierPoolsLeftoverStateOrNoneCountsNothingAllocated(t *testing.T) {
	reborn, fresh := pool("reborn", "10.5.0.0/24", nil), pool("fresh", "10.6.0.0/24", nil)
	leftover := allocation(reborn, "1-200")
	leftover.PoolUID = "uid-of-an-earlier-reborn"
	c := fakeAPI(t, reborn, leftover, fresh)

	got, _ := capacities(t, c)
	for _, name := range []string{"reborn", "fresh"} {
		if p := got[name]; p.Allocated != 0 || p.Free != 254 || p.Problem != "" {
			t.Errorf("pool %s = %+v, want nothing allocated, 254 free", name, *p)
		}
	}
	if r, err := Who(t.Context(), c, netip.MustParseAddr("10.5.0.7"), now); err != nil || r.State != "free" {
		t.Errorf("who 10.5.0.7 = %+v (%v), want free: the leftover marks nothing of the pool now", r, err)
	}
	if r, err := GC(t.Context(), c, now, time.Minute); err != nil || len(r.Orphans) != 0 {
		t.Errorf("gc orphans = %+v (%v), want none of a leftover state", r, err)
	}
}
