package store

import (
	"context"
	"fmt"
	"net/netip"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/underpool/underpool/api/v1"
)

// conflict allocates an address of pool through p and reports it answered for by mac, as
// a failed ADD's release does; it returns the address and what the commit decided.
func conflict(t *testing.T, p *PoolCommitter, pool, mac string, limits QuarantineLimits) (netip.Addr, QuarantineOutcome) {
	t.Helper()
	addr, _, err := allocate(p, context.Background(), pool)
	if err != nil {
		t.Fatal(err)
	}
	res, err := p.Quarantine(context.Background(), Free{Pool: pool, Addr: addr.Addr(), Evidence: p.now()}, mac, time.Now().Add(time.Hour), limits)
	if err != nil {
		t.Fatal(err)
	}
	return addr.Addr(), res.Outcome
}

func macN(i int) string { return fmt.Sprintf("02:00:00:00:%02x:%02x", i/256, i%256) }

// Issue 17, finding 8: every conflict quarantined an address, so hosts answering for
// the whole subnet drained the pool. Past the pool's share the address is released
// instead: it stays allocatable, and the quarantine stops growing.
func TestQuarantineStopsAtThePoolsShareAndReleasesTheRest(t *testing.T) {
	api := fakeAPI(t, ippool("p", "10.0.0.0/24", "10.0.0.1-10.0.0.100"))
	p := newPools(api, nil)
	limits := QuarantineLimits{MaxShare: 0.1, Floor: 2}
	for i := range 20 {
		addr, got := conflict(t, p, "p", macN(i), limits)
		want := Quarantined
		if i >= 10 {
			want = QuarantineFull
		}
		if got != want {
			t.Fatalf("conflict %d on %s: outcome %v, want %v", i, addr, got, want)
		}
	}
	st := readState(t, api, "p")
	if len(st.Quarantined) != 10 || st.AllocatedIPCount != 0 || st.FreeIPCount != 90 {
		t.Fatalf("status: %d quarantined, %d allocated, %d free; want 10, 0 and 90 (the refused ones released)",
			len(st.Quarantined), st.AllocatedIPCount, st.FreeIPCount)
	}
}

// The cap counts the pool's status, which every node writes: a second ipamd finds the
// quarantine the first filled already full.
func TestTheQuarantineCapHoldsAcrossNodes(t *testing.T) {
	api := fakeAPI(t, ippool("p", "10.0.0.0/24", "10.0.0.1-10.0.0.40"))
	a, b := newPools(api, nil), newPools(api, nil)
	limits := QuarantineLimits{MaxShare: 0.1, Floor: 1}
	for i := range 4 {
		if _, got := conflict(t, a, "p", macN(i), limits); got != Quarantined {
			t.Fatalf("node a, conflict %d: %v", i, got)
		}
	}
	if addr, got := conflict(t, b, "p", macN(9), limits); got != QuarantineFull {
		t.Fatalf("node b quarantined %s past the cluster-wide cap of 4: %v", addr, got)
	}
	if q := readState(t, api, "p").Quarantined; len(q) != 4 {
		t.Fatalf("%d quarantined, want the cap of 4", len(q))
	}
}

// One MAC keeps at most PerMAC addresses of a pool in quarantine: a host answering for
// more is a spoofer or a proxy. Another MAC still quarantines its address.
func TestOneMACQuarantinesAtMostPerMACAddresses(t *testing.T) {
	api := fakeAPI(t, ippool("p", "10.0.0.0/24"))
	p := newPools(api, nil)
	limits := QuarantineLimits{MaxShare: 0.5, PerMAC: 3}
	proxy := "02:aa:bb:cc:dd:ee"
	for i := range 6 {
		want := Quarantined
		if i >= 3 {
			want = QuarantineSpoofer
		}
		if addr, got := conflict(t, p, "p", proxy, limits); got != want {
			t.Fatalf("answer %d of the proxy (%s): %v, want %v", i, addr, got, want)
		}
	}
	// MACs compare case-insensitively: the same host written in capitals is no other
	if _, got := conflict(t, p, "p", "02:AA:BB:CC:DD:EE", limits); got != QuarantineSpoofer {
		t.Fatalf("the proxy's MAC in capitals: %v", got)
	}
	if _, got := conflict(t, p, "p", macN(1), limits); got != Quarantined {
		t.Fatalf("a host holding one address: %v", got)
	}
	if _, got := conflict(t, p, "p", "", limits); got != Quarantined {
		t.Fatalf("a conflict without a MAC (IPv6, unresolved): %v", got)
	}
	st := readState(t, api, "p")
	if len(st.Quarantined) != 5 || st.AllocatedIPCount != 0 {
		t.Fatalf("status: %d quarantined, %d allocated; want 5 (3 of the proxy, 2 others) and 0", len(st.Quarantined), st.AllocatedIPCount)
	}
}

// Expired entries do not count against the cap, and quarantining an address again only
// moves its end, whatever the cap.
func TestExpiredAndRepeatedEntriesDoNotCountAgainstTheCap(t *testing.T) {
	pool := ippool("p", "10.0.0.0/24", "10.0.0.1-10.0.0.20")
	past := metav1.NewTime(time.Now().Add(-time.Minute))
	var st v1.AllocationState
	for i := range 5 {
		st.Quarantined = append(st.Quarantined, v1.QuarantinedIP{IP: fmt.Sprintf("10.0.0.%d", 11+i), MAC: macN(i), Until: past})
	}
	api := fakeAPI(t, pool, stateFor(pool, st))
	p := newPools(api, nil)
	limits := QuarantineLimits{MaxShare: 0.05, Floor: 1} // a cap of one
	addr, got := conflict(t, p, "p", macN(7), limits)
	if got != Quarantined {
		t.Fatalf("expired entries counted: %v", got)
	}
	res, err := p.Quarantine(context.Background(), Free{Pool: "p", Addr: addr, Evidence: p.now()}, macN(7), time.Now().Add(2*time.Hour), limits)
	if err != nil || res.Outcome != Quarantined {
		t.Fatalf("quarantining %s again: %v %v", addr, res, err)
	}
	if q := readState(t, api, "p").Quarantined; len(q) != 1 || q[0].IP != addr.String() || time.Until(q[0].Until.Time) < time.Hour {
		t.Fatalf("quarantine %+v, want %s alone, until about 2 h from now", q, addr)
	}
}

func TestQuarantineCap(t *testing.T) {
	for _, c := range []struct {
		limits QuarantineLimits
		total  int64
		want   int
	}{
		{QuarantineLimits{MaxShare: 0.1, Floor: 4}, 254, 25},
		{QuarantineLimits{MaxShare: 0.1, Floor: 4}, 10, 4},                   // the floor
		{QuarantineLimits{MaxShare: 0.1, Floor: 4}, 1 << 62, maxQuarantined}, // an IPv6 /64
		{QuarantineLimits{MaxShare: 0.1, Floor: 5000}, 100, maxQuarantined},  // the floor is bounded too
		{QuarantineLimits{}, 254, maxQuarantined},                            // no share limit
		{QuarantineLimits{MaxShare: 1}, 65534, maxQuarantined},               // a whole /16
	} {
		if got := c.limits.Cap(c.total); got != c.want {
			t.Errorf("%+v of %d: cap %d, want %d", c.limits, c.total, got, c.want)
		}
	}
}
