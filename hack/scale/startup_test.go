package main

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/underpool/underpool/tests/harness"
)

// The --startup mode at a tiny size, end to end against the real apiserver and ipamd: the
// run must be refused unless ipamd reconciled every pod and wrote no PoolAllocation (the
// setup marked every address), and the report must hold the figures. No timing is asserted.
func TestStartupModeSmoke(t *testing.T) {
	harness.RequireRoot(t)
	o := defaultStartupOptions()
	o.pods, o.pools, o.runs, o.drain, o.out = 3, 7, 2, time.Second, t.TempDir()
	rep, err := runStartup(o)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Runs) != 2 {
		t.Fatalf("%d runs, want 2", len(rep.Runs))
	}
	for _, r := range rep.Runs {
		if r.ReadyMs <= 0 || r.RemarkGets != 3 || r.ReconciledMs <= 0 || r.ReconciledMs > r.ReadyMs || r.IpamdCPUMs <= 0 {
			t.Errorf("run %d not measured: %+v", r.Run, r)
		}
		if r.Requests["GET underpool.io/poolallocations"] != 3 || r.IpamdRequests["get poolallocations"] != 3 {
			t.Errorf("run %d: want 3 PoolAllocation GETs in the apiserver's metrics and the audit log: %v, %v", r.Run, r.Requests, r.IpamdRequests)
		}
	}
	text := rep.markdown()
	for _, want := range []string{"ipamd start-up with 3 pods and 7 pools", "Ready in min / median / max", "poolallocations"} {
		if !strings.Contains(text, want) {
			t.Errorf("report lacks %q:\n%s", want, text)
		}
	}
	paths, err := rep.write(o.out, text)
	if err != nil || len(paths) != 2 {
		t.Fatalf("write: %v %v", paths, err)
	}
}

func TestStartupPoolsAreDistinctSubnetsOfTheTestRange(t *testing.T) {
	o := defaultStartupOptions()
	o.pools = maxStartupPools
	testRange := netip.MustParsePrefix("10.250.0.0/16")
	seen := map[netip.Addr]bool{}
	for k := range o.pools {
		s := startupSubnet(k)
		if !testRange.Contains(s.Addr()) || s.Bits() != 26 || s.Masked() != s || seen[s.Addr()] {
			t.Fatalf("pool %d: subnet %s is not a fresh /26 of %s", k, s, testRange)
		}
		seen[s.Addr()] = true
	}
	o.pools = 1000
	used := map[int]bool{}
	for i := range o.pods {
		k := o.startupPoolOf(i)
		a := startupAddr(k, startupOffset(i))
		s := startupSubnet(k)
		if used[k] || k >= o.pools || !s.Contains(a) || a == s.Addr() || a.As4()[3]&63 == 63 {
			t.Fatalf("pod %d: address %s in pool %d (%s) is shared, outside or the network/broadcast address", i, a, k, s)
		}
		used[k] = true
	}
}

func TestStartupRunReadsPhasesFromIpamdLog(t *testing.T) {
	started := time.Unix(1_800_000_000, 0)
	at := func(d time.Duration) float64 { return float64(started.Add(d).UnixNano()) / 1e9 }
	log := strings.Join([]string{
		fmt.Sprintf(`{"level":"info","ts":%f,"msg":"ipamd starting","mode":"node"}`, at(20*time.Millisecond)),
		"not json",
		fmt.Sprintf(`{"level":"info","ts":%f,"msg":"waiting for informer caches"}`, at(50*time.Millisecond)),
		fmt.Sprintf(`{"level":"info","ts":%f,"msg":"reconciled this node's endpoints","endpoints":250,"addresses":250,"pools":250}`, at(900*time.Millisecond)),
		fmt.Sprintf(`{"level":"info","ts":%f,"msg":"ipamd ready"}`, at(910*time.Millisecond)),
	}, "\n")
	path := filepath.Join(t.TempDir(), "ipamd.log")
	if err := os.WriteFile(path, []byte(log), 0o644); err != nil {
		t.Fatal(err)
	}
	var r startupRun
	if err := r.fromLog(path, started); err != nil {
		t.Fatal(err)
	}
	near := func(got, want float64) bool { return got > want-1 && got < want+1 }
	if !near(r.StartingMs, 20) || !near(r.InformersMs, 50) || !near(r.ReconciledMs, 900) || !near(r.ReadyLogMs, 910) {
		t.Errorf("phases %+v", r)
	}
	if r.Reconciled != (reconciledCounts{Endpoints: 250, Addresses: 250, Pools: 250}) {
		t.Errorf("reconciled %+v", r.Reconciled)
	}
}

// The re-mark's span runs from the first PoolAllocation GET of this node's ipamd received
// to the last one answered; other clients' and other resources' requests, and requests
// outside the window, are not part of it.
func TestStartupRunTimesTheRemarkFromTheAuditLog(t *testing.T) {
	from := time.Date(2026, 1, 1, 10, 0, 0, 0, time.UTC)
	ev := func(id, ua, verb, res, stage string, received, stageAt time.Duration) string {
		return fmt.Sprintf(`{"auditID":%q,"stage":%q,"verb":%q,"userAgent":%q,"objectRef":{"resource":%q},`+
			`"requestReceivedTimestamp":%q,"stageTimestamp":%q}`, id, stage, verb, ua, res,
			from.Add(received).Format(time.RFC3339Nano), from.Add(stageAt).Format(time.RFC3339Nano))
	}
	ipamd := ipamdUserAgent + startupNode + " (linux/amd64) kubernetes/abc"
	lines := []string{
		ev("w1", ipamd, "watch", "endpoints", "ResponseStarted", 100*time.Millisecond, 110*time.Millisecond),
		ev("g1", ipamd, "get", "poolallocations", "ResponseComplete", 400*time.Millisecond, 403*time.Millisecond),
		ev("g2", ipamd, "get", "poolallocations", "ResponseComplete", 404*time.Millisecond, 407*time.Millisecond),
		ev("x1", "kubectl/v1.33", "get", "poolallocations", "ResponseComplete", 500*time.Millisecond, 900*time.Millisecond),
		ev("g3", ipamd, "get", "poolallocations", "ResponseComplete", 700*time.Millisecond, 705*time.Millisecond),
		ev("late", ipamd, "get", "poolallocations", "ResponseComplete", 3*time.Second, 3*time.Second),
	}
	path := filepath.Join(t.TempDir(), "audit.log")
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var r startupRun
	if err := r.fromAudit(path, 0, from, from.Add(2*time.Second)); err != nil {
		t.Fatal(err)
	}
	if r.RemarkGets != 3 || r.FirstRemarkMs != 400 || r.LastRemarkMs != 705 || r.RemarkSpanMs != 305 {
		t.Errorf("re-mark %d GETs, %v to %v ms (span %v), want 3, 400 to 705 (305)", r.RemarkGets, r.FirstRemarkMs, r.LastRemarkMs, r.RemarkSpanMs)
	}
	if r.IpamdRequests["get poolallocations"] != 3 || r.IpamdRequests["watch endpoints"] != 1 {
		t.Errorf("ipamd's requests %v", r.IpamdRequests)
	}
}

// A run whose ipamd wrote a PoolAllocation timed a repair of the setup, not a start-up:
// it is refused, as is one that reconciled another number of pods than the case has.
func TestStartupCheckRefusesARunThatDidNotMeasureTheCase(t *testing.T) {
	o := defaultStartupOptions()
	ok := startupRun{Reconciled: reconciledCounts{250, 250, 250}, Requests: map[string]float64{"GET underpool.io/poolallocations": 250}}
	if err := ok.check(o); err != nil {
		t.Errorf("a run that measured the case refused: %v", err)
	}
	wrote := ok
	wrote.Requests = map[string]float64{"GET underpool.io/poolallocations": 250, "PUT underpool.io/poolallocations": 1}
	if err := wrote.check(o); err == nil || !strings.Contains(err.Error(), "PUT") {
		t.Errorf("a run that wrote a PoolAllocation: %v", err)
	}
	short := ok
	short.Reconciled.Pools = 249
	if err := short.check(o); err == nil {
		t.Error("a run that reconciled 249 pools was accepted")
	}
}

func TestStartupOptionsNameTheFlagToFix(t *testing.T) {
	for _, c := range []struct {
		mod  func(*startupOptions)
		flag string
	}{
		{func(o *startupOptions) { o.pools = 2000 }, "--startup-pools"},
		{func(o *startupOptions) { o.pods = 1001 }, "--startup-pods"},
		{func(o *startupOptions) { o.runs = 0 }, "--startup-runs"},
	} {
		o := defaultStartupOptions()
		c.mod(&o)
		if err := o.validate(); err == nil || !strings.Contains(err.Error(), c.flag) {
			t.Errorf("want an error naming %s, got %v", c.flag, err)
		}
	}
	if err := defaultStartupOptions().validate(); err != nil {
		t.Errorf("defaults refused: %v", err)
	}
}
