package service_test

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"k8s.io/client-go/tools/record"

	"github.com/underpool/underpool/ipamd/service"
	"github.com/underpool/underpool/ipamd/store"
	"github.com/underpool/underpool/rpc"
)

// conflictingAdd runs an ADD for a fresh pod through svc and then the release a failed ADD
// sends: the address was answered for by mac. It returns the address.
func conflictingAdd(t *testing.T, w *world, svc *service.Service, i int, pool, mac string) string {
	t.Helper()
	pod := podObj("ns", fmt.Sprintf("p%d", i), svc.Node, nil)
	w.create(pod)
	addr := add(t, svc, pod, fmt.Sprintf("ctr-%d", i), pool)
	ip := netip.MustParsePrefix(addr).Addr().String()
	if err := svc.Release(context.Background(), &rpc.ReleaseRequest{ContainerID: fmt.Sprintf("ctr-%d", i), IfName: "net1",
		Pod: rpc.Pod{Namespace: "ns", Name: pod.Name}, Conflicts: []rpc.Conflict{{IP: ip, MAC: mac}}}); err != nil {
		t.Fatalf("the failed ADD's release: %v", err)
	}
	return ip
}

func drainEvents(rec *record.FakeRecorder) []string {
	var out []string
	for {
		select {
		case e := <-rec.Events:
			out = append(out, e)
		default:
			return out
		}
	}
}

func withReason(events []string, reason string) []string {
	var out []string
	for _, e := range events {
		if strings.Contains(e, " "+reason+" ") {
			out = append(out, e)
		}
	}
	return out
}

// Issue 17, finding 8: one host answering ARP for the whole subnet (a proxy-ARP router)
// quarantined one address per failed ADD and drained the pool. Once its MAC has answered
// for more than PerMAC addresses it is judged a spoofer: one ConflictSpoofer event, the
// spoofer gauge, and its answers quarantine nothing more: the addresses are released and
// the pool keeps serving. A real squatter (another MAC) is still quarantined.
func TestOneMACAnsweringForManyAddressesDoesNotDrainThePool(t *testing.T) {
	pool := newPoolObj("p", "10.250.1.0/24")
	pool.Spec.IPs = []string{"10.250.1.10-10.250.1.29"} // 20 addresses
	w := newWorld(t, nil, nsObj("ns"), nodeObj("node-a"), pool)
	svc := w.ipamd("node-a", nil)
	rec := record.NewFakeRecorder(100)
	svc.Events = rec
	svc.QuarantineLimits = store.QuarantineLimits{MaxShare: 0.5, Floor: 4, PerMAC: 3}
	proxy := "02:aa:bb:cc:dd:ee"
	for i := range 12 {
		conflictingAdd(t, w, svc, i, "p", proxy)
	}
	st := w.pool("p").Status
	if len(st.Quarantined) != 3 || st.AllocatedIPCount != 0 {
		t.Fatalf("after 12 answers of one MAC: %d quarantined, %d allocated; want 3 and 0", len(st.Quarantined), st.AllocatedIPCount)
	}
	events := drainEvents(rec)
	if got := withReason(events, service.ReasonIPConflict); len(got) != 3 {
		t.Fatalf("%d IPConflict events, want 3: %v", len(got), events)
	}
	spoofer := withReason(events, service.ReasonConflictSpoofer)
	if len(spoofer) != 1 || !strings.Contains(spoofer[0], proxy+" answers for 4 addresses") {
		t.Fatalf("ConflictSpoofer events %v, want one naming %s and its 4 addresses", spoofer, proxy)
	}
	if got := testutil.ToFloat64(svc.Metrics.QuarantineRefused.WithLabelValues("p", service.RefusedSpoofer)); got != 9 {
		t.Fatalf("refused as a spoofer's: %v, want 9", got)
	}
	if n := testutil.CollectAndCount(svc.Metrics.Spoofers.Vec(), "underpool_ipamd_conflict_spoofers"); n != 1 {
		t.Fatalf("%d spoofer series, want 1", n)
	}
	if got := testutil.ToFloat64(svc.Metrics.Spoofers.Vec().WithLabelValues("p")); got != 1 {
		t.Fatalf("underpool_ipamd_conflict_spoofers{pool=p} = %v, want 1", got)
	}
	squatted := conflictingAdd(t, w, svc, 100, "p", "02:00:00:00:00:01")
	if q := w.state("p").Quarantined; len(q) != 4 || q[3].IP != squatted {
		t.Fatalf("a host holding one address was not quarantined: %+v", q)
	}
	// the pool still serves everything but the quarantine
	for i := range 16 {
		pod := podObj("ns", fmt.Sprintf("live%d", i), "node-a", nil)
		w.create(pod)
		add(t, svc, pod, fmt.Sprintf("live-%d", i), "p")
	}
	w.requireOneOwner()
}

// The pool's status is the cluster's memory: a MAC that already holds PerMAC quarantined
// addresses there (answers another node saw) is judged on this node's first meeting.
func TestASpooferSeenByAnotherNodeIsJudgedAtOnce(t *testing.T) {
	pool := newPoolObj("p", "10.250.1.0/24")
	pool.Spec.IPs = []string{"10.250.1.10-10.250.1.29"}
	w := newWorld(t, nil, nsObj("ns"), nodeObj("node-a"), nodeObj("node-b"), pool)
	limits := store.QuarantineLimits{MaxShare: 0.5, PerMAC: 2}
	a, b := w.ipamd("node-a", nil), w.ipamd("node-b", nil)
	a.QuarantineLimits, b.QuarantineLimits = limits, limits
	rec := record.NewFakeRecorder(10)
	b.Events = rec
	proxy := "02:aa:bb:cc:dd:ee"
	conflictingAdd(t, w, a, 0, "p", proxy)
	conflictingAdd(t, w, a, 1, "p", proxy)
	conflictingAdd(t, w, b, 2, "p", proxy)
	if got := withReason(drainEvents(rec), service.ReasonConflictSpoofer); len(got) != 1 {
		t.Fatalf("node b's ConflictSpoofer events: %v, want one", got)
	}
	if st := w.pool("p").Status; len(st.Quarantined) != 2 || st.AllocatedIPCount != 0 {
		t.Fatalf("%d quarantined, %d allocated; want 2 and 0", len(st.Quarantined), st.AllocatedIPCount)
	}
}

// Many hosts answering (each for one address) fill the quarantine up to the pool's
// share, and no further: a QuarantineFull event and the refused counter say so.
func TestManyHostsFillTheQuarantineOnlyUpToItsShare(t *testing.T) {
	pool := newPoolObj("p", "10.250.1.0/24")
	pool.Spec.IPs = []string{"10.250.1.10-10.250.1.49"} // 40 addresses: a share of 0.1 is 4
	w := newWorld(t, nil, nsObj("ns"), nodeObj("node-a"), pool)
	svc := w.ipamd("node-a", nil)
	rec := record.NewFakeRecorder(100)
	svc.Events = rec
	svc.QuarantineLimits = store.QuarantineLimits{MaxShare: 0.1, Floor: 2, PerMAC: 3}
	for i := range 10 {
		conflictingAdd(t, w, svc, i, "p", fmt.Sprintf("02:00:00:00:00:%02x", i))
	}
	if st := w.pool("p").Status; len(st.Quarantined) != 4 || st.AllocatedIPCount != 0 {
		t.Fatalf("%d quarantined, %d allocated; want 4 and 0", len(st.Quarantined), st.AllocatedIPCount)
	}
	if got := withReason(drainEvents(rec), service.ReasonQuarantineFull); len(got) != 6 || !strings.Contains(got[0], "already keeps 4 addresses in quarantine") {
		t.Fatalf("QuarantineFull events %v, want 6 saying the pool keeps 4", got)
	}
	if got := testutil.ToFloat64(svc.Metrics.QuarantineRefused.WithLabelValues("p", service.RefusedFull)); got != 6 {
		t.Fatalf("refused as full: %v, want 6", got)
	}
}
