package kubectlplugin

import (
	"bytes"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestWhoSaysWhetherAnAddressIsHeldOrphanFreeOrUnmanaged(t *testing.T) {
	p := pool("p", "10.3.0.0/24", nil)
	c := fakeAPI(t, p, allocation(p, "6,20"), runningPod("ns", "live", "uid-live"),
		endpoint("ns", "live", "uid-live", now.Add(-time.Hour), ip("10.3.0.6/24", "p")))
	for _, tc := range []struct{ addr, state, detail string }{
		{"10.3.0.6", "held", ""},
		{"10.3.0.20", "orphan", "PoolAllocation p marks it allocated but no Endpoint holds it"},
		{"10.3.0.21", "free", "no Endpoint holds it and no pool marks it allocated"},
		{"10.9.0.1", "unknown", "no IPPool's subnet covers it"},
	} {
		r, err := Who(t.Context(), c, netip.MustParseAddr(tc.addr), now)
		if err != nil {
			t.Fatal(err)
		}
		if r.State != tc.state || !strings.Contains(r.Detail, tc.detail) || (tc.detail == "") != (r.Detail == "") {
			t.Errorf("who %s = %s (%s), want %s (%s)", tc.addr, r.State, r.Detail, tc.state, tc.detail)
		}
	}
	r, _ := Who(t.Context(), c, netip.MustParseAddr("10.3.0.6"), now)
	var out bytes.Buffer
	whoTable(&out, r, now)
	for _, want := range [][]string{{"STATE:", "held"}, {"POD:", "ns/live (Running)"}, {"ADDRESS:", "10.3.0.6/24 from pool p"},
		{"CONTAINER:", "live-cid"}, {"NODE:", "node-1"}, {"SINCE:", "2025-03-04T04:06:07Z (60m ago)"}} {
		if !hasRow(out.String(), want...) {
			t.Errorf("the who table has no line with %q:\n%s", want, out.String())
		}
	}
}

// ipamd hands out nothing of a pool whose state is corrupt: who must not call its
// addresses free (nor, with offsets past the subnet counted, orphans) without saying so.
func TestWhoNamesTheProblemOfACorruptPoolCoveringTheAddress(t *testing.T) {
	p := pool("c", "10.4.0.0/24", nil)
	c := fakeAPI(t, p, allocation(p, "3,4000"))
	r, err := Who(t.Context(), c, netip.MustParseAddr("10.4.0.3"), now)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(r.Detail, "IPPool c") || !strings.Contains(r.Detail, "state.allocated") {
		t.Errorf("who 10.4.0.3 = %s (%s), want pool c's state named", r.State, r.Detail)
	}
}
