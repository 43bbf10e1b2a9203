package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/underpool/underpool/core/allocator"
	"github.com/underpool/underpool/tests/harness"
)

func TestFragmentedPoolHoldsEveryOtherAddressInItsOwnRun(t *testing.T) {
	held, allocated := fragmented(8)
	if fmt.Sprint(held) != "[1 3 5 7]" || allocated != "1,3,5,7" {
		t.Fatalf("held %v, allocated %q", held, allocated)
	}
	// the string is a status ipamd accepts, with one run per held address
	_, allocated = fragmented(4096)
	set, err := allocator.ParseAllocated(netip.MustParsePrefix("10.189.0.0/16"), allocated)
	if err != nil {
		t.Fatal(err)
	}
	if len(set.Runs()) != 2048 || set.Count() != 2048 || set.Contains(2) || !set.Contains(4095) {
		t.Errorf("%d runs, %d held", len(set.Runs()), set.Count())
	}
}

func TestAllocOptionsRefuseWhatCannotRun(t *testing.T) {
	ok := defaultAllocOptions()
	if err := ok.validate(100, 1000); err != nil {
		t.Fatalf("defaults refused: %v", err)
	}
	off := ok
	off.rate = 0
	if err := off.validate(1, 1); err != nil {
		t.Errorf("a skipped phase was validated: %v", err)
	}
	cases := map[string]struct {
		change        func(*allocOptions)
		ipamds, nodes int
		want          string
	}{
		"more allocating ipamds than ipamds": {func(a *allocOptions) {}, 5, 1000, "--alloc-ipamds"},
		"no node for the held addresses":     {func(a *allocOptions) {}, 100, 100, "--nodes"},
		"pool too small for the churn":       {func(a *allocOptions) { a.poolSize = 2000 }, 100, 1000, "--alloc-pool-size 2000 leaves 1000"},
		"no allocation at all":               {func(a *allocOptions) { a.window = time.Millisecond }, 100, 1000, "starts no allocation"},
		"no plugin slot":                     {func(a *allocOptions) { a.inflight = 0 }, 100, 1000, "--alloc-inflight"},
	}
	for name, c := range cases {
		a := defaultAllocOptions()
		c.change(&a)
		if err := a.validate(c.ipamds, c.nodes); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error naming %q", name, err, c.want)
		}
	}
}

func TestPercentileIsTheNearestRank(t *testing.T) {
	var xs []time.Duration
	for i := 100; i >= 1; i-- {
		xs = append(xs, time.Duration(i)*time.Millisecond)
	}
	for p, want := range map[float64]time.Duration{50: 50 * time.Millisecond, 99: 99 * time.Millisecond, 100: 100 * time.Millisecond, 1: time.Millisecond} {
		if got := percentile(xs, p); got != want {
			t.Errorf("p%g = %s, want %s", p, got, want)
		}
	}
	if percentile(nil, 50) != 0 || percentile(xs[:1], 99) != 100*time.Millisecond {
		t.Error("empty or single sample")
	}
	if xs[0] != 100*time.Millisecond {
		t.Error("percentile sorted its input in place")
	}
}

func TestFailureReasonCountsCausesNotAddresses(t *testing.T) {
	conflict := types.NewError(11, "allocating addresses: updating IPPool scale-alloc status: Operation cannot be fulfilled: the object has been modified", "")
	if got := failureReason(conflict); got != "code 11: conflict" {
		t.Errorf("conflict: %q", got)
	}
	a := failureReason(types.NewError(999, "pod scale-alloc/alloc-000017 not found on node-0003", ""))
	b := failureReason(types.NewError(999, "pod scale-alloc/alloc-000042 not found on node-0007", ""))
	if a != b || !strings.HasPrefix(a, "code 999: ") {
		t.Errorf("two pods' same failure counted apart: %q, %q", a, b)
	}
	if got := failureReason(fmt.Errorf("wrap: %w", errors.New("signal: killed"))); got != "timeout" {
		t.Errorf("a killed plugin: %q", got)
	}
	if got := failureReason(types.NewError(11, "allocating addresses: IPPool x is exhausted", "")); got != "code 11: exhausted" {
		t.Errorf("exhausted: %q", got)
	}
}

func TestPacedKeepsTheRateAndBoundsTheProcessesInFlight(t *testing.T) {
	// every op holds its slot until released: the first three fill the slots, and the
	// test sees exactly three in flight before it lets them go (no timing decides that)
	var running, most atomic.Int32
	release := make(chan struct{})
	done := make(chan []allocSample)
	go func() {
		done <- paced(context.Background(), 20, 2000, 3, func(i int) allocSample {
			n := running.Add(1)
			for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
			}
			<-release
			running.Add(-1)
			return allocSample{add: time.Duration(i)}
		})
	}()
	for deadline := time.Now().Add(time.Minute); running.Load() < 3; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d ops in flight after a minute, want 3", running.Load())
		}
	}
	const held = 100 * time.Millisecond
	time.Sleep(held) // the fourth start is due meanwhile, and waits for a slot
	close(release)
	samples := <-done
	if len(samples) != 20 || most.Load() != 3 {
		t.Fatalf("%d samples, %d at most in flight, want 20 and 3", len(samples), most.Load())
	}
	for i, s := range samples {
		if s.add != time.Duration(i) {
			t.Errorf("sample %d holds another operation's result", i)
		}
	}
	// starts that waited for a slot say how late they were: at least as long as the slots
	// were held (a lower bound: a busy machine only makes them later)
	if samples[3].late < held-10*time.Millisecond {
		t.Errorf("the fourth start, which waited %s for a slot, reports %s late", held, samples[3].late)
	}
	// with slots to spare the schedule sets the pace: 5 starts at 50/s span 80 ms at least
	start := time.Now()
	paced(context.Background(), 5, 50, 10, func(int) allocSample { return allocSample{} })
	if d := time.Since(start); d < 80*time.Millisecond {
		t.Errorf("5 starts at 50/s took %s, want >= 80 ms", d)
	}
}

// ipamdText is an ipamd's /metrics with the figures the phase reads.
func ipamdText(poolEvents, commits, conflicts, ok float64) string {
	return fmt.Sprintf(`underpool_ipamd_watch_events_total{resource="ippools"} %g
underpool_ipamd_watch_events_total{resource="pods"} 7
underpool_pool_commits_total %g
underpool_pool_commit_conflicts_total %g
underpool_pool_allocations_total{pool="scale-alloc",result="ok"} %g
underpool_pool_allocations_total{pool="scale-00",result="ok"} 50
`, poolEvents, commits, conflicts, ok)
}

// apiserverText is kube-apiserver's /metrics with the figures the phase reads.
func apiserverText(poolEvents, poolBytes, epEvents, epBytes, updates, gets, readBytes float64) string {
	return fmt.Sprintf(`apiserver_watch_events_total{group="underpool.io",resource="ippools",version="v1"} %g
apiserver_watch_events_sizes_sum{group="underpool.io",resource="ippools",version="v1"} %g
apiserver_watch_events_total{group="underpool.io",resource="endpoints",version="v1"} %g
apiserver_watch_events_sizes_sum{group="underpool.io",resource="endpoints",version="v1"} %g
apiserver_response_sizes_sum{component="apiserver",group="underpool.io",resource="ippools",scope="resource",subresource="",verb="GET",version="v1"} %g
apiserver_request_total{code="200",component="apiserver",dry_run="",group="underpool.io",resource="ippools",scope="resource",subresource="status",verb="PUT",version="v1"} %g
apiserver_request_total{code="200",component="apiserver",dry_run="",group="underpool.io",resource="ippools",scope="resource",subresource="",verb="GET",version="v1"} %g
apiserver_request_total{code="409",component="apiserver",dry_run="",group="underpool.io",resource="ippools",scope="resource",subresource="status",verb="PUT",version="v1"} %g
apiserver_request_total{code="200",component="",dry_run="",group="",resource="",scope="",subresource="/metrics",verb="GET",version=""} 9
apiserver_longrunning_requests{component="apiserver",group="underpool.io",resource="ippools",scope="cluster",subresource="",verb="WATCH",version="v1"} 3
`, poolEvents, poolBytes, epEvents, epBytes, readBytes, updates, gets, gets)
}

// allocationText is the apiserver's figures for PoolAllocations, which nobody watches:
// state updates, GETs (after a conflict) and their answers' bytes, no watch events.
func allocationText(updates, gets, getBytes float64) string {
	return fmt.Sprintf(`apiserver_request_total{code="200",component="apiserver",dry_run="",group="underpool.io",resource="poolallocations",scope="resource",subresource="",verb="PUT",version="v1"} %g
apiserver_request_total{code="200",component="apiserver",dry_run="",group="underpool.io",resource="poolallocations",scope="resource",subresource="",verb="GET",version="v1"} %g
apiserver_response_sizes_sum{component="apiserver",group="underpool.io",resource="poolallocations",scope="resource",subresource="",verb="GET",version="v1"} %g
apiserver_response_sizes_count{component="apiserver",group="underpool.io",resource="poolallocations",scope="resource",subresource="",verb="GET",version="v1"} %g
`, updates, gets, getBytes, gets)
}

// Three ipamds, the first allocating: 10 allocations, 12 pool commits that each ipamd
// received, 4 conflicts; the apiserver sent 36 pool events of 1000 bytes; 12 updates of
// the pool's PoolAllocation, whose GETs answered 500 bytes each.
func churnInputs() allocInputs {
	t0 := time.Date(2026, 1, 1, 10, 0, 0, 0, time.UTC)
	before := allocSnapshot{at: t0, apiCPU: 10 * time.Second, etcdCPU: time.Second, load: "1.00 2.00 3.00",
		ipamds: []string{ipamdText(1, 0, 0, 0), ipamdText(1, 0, 0, 0), ipamdText(1, 0, 0, 0)},
		api:    apiserverText(3, 3000, 0, 0, 0, 0, 0) + allocationText(0, 0, 0)}
	after := allocSnapshot{at: t0.Add(20 * time.Second), apiCPU: 13 * time.Second, etcdCPU: 2 * time.Second, load: "2.00 2.00 3.00",
		ipamds: []string{ipamdText(13, 12, 4, 10), ipamdText(13, 0, 0, 0), ipamdText(11, 0, 0, 0)},
		api:    apiserverText(39, 39000, 20, 10000, 16, 4, 4000) + allocationText(12, 4, 2000)}
	var samples []allocSample
	for i := 1; i <= 10; i++ {
		samples = append(samples, allocSample{add: time.Duration(i) * 10 * time.Millisecond, del: 5 * time.Millisecond})
	}
	samples[9].addErr = types.NewError(11, "IPPool scale-alloc is exhausted", "")
	samples[3].late = time.Second
	return allocInputs{before: before, after: after, samples: samples, allocating: 1, seconds: 10, baselineCPU: 0.1}
}

func TestAllocResultsComeFromTheSnapshotsAndSamples(t *testing.T) {
	a := defaultAllocOptions()
	r := churnInputs().results(a, 4096, 2048, 9000)
	if !r.EventsKnown || r.EventsAllocating != (groupStat{N: 1, Mean: 12, Min: 12, Max: 12}) || r.EventsIdle.N != 2 ||
		r.EventsIdle.Mean != 11 || r.EventsIdle.Min != 10 || r.EventsIdle.Max != 12 {
		t.Errorf("events per ipamd: allocating %+v, idle %+v", r.EventsAllocating, r.EventsIdle)
	}
	if r.Commits != 12 || r.Conflicts != 4 || r.AllocResults["ok"] != 10 || len(r.AllocResults) != 1 {
		t.Errorf("commits %g, conflicts %g, results %v", r.Commits, r.Conflicts, r.AllocResults)
	}
	if r.PoolEventsSent != 36 || r.PoolEventBytes != 36000 || r.WatchBytes != 46000 || r.ReadBytes != 6000 || r.PoolWatchers != 3 {
		t.Errorf("apiserver: %+v", r)
	}
	// nobody watches PoolAllocations: no event, no watcher, none on any ipamd
	if r.AllocEventsSent != 0 || r.AllocEventBytes != 0 || r.AllocWatchers != 0 ||
		r.AllocEventsIdle != (groupStat{N: 2}) || r.AllocEventsAllocating != (groupStat{N: 1}) {
		t.Errorf("PoolAllocation events: sent %g (%g B) to %g watchers; per ipamd allocating %+v, idle %+v",
			r.AllocEventsSent, r.AllocEventBytes, r.AllocWatchers, r.AllocEventsAllocating, r.AllocEventsIdle)
	}
	// 16 status updates answered with the pool (1000 bytes, as its watch events), 4 lost
	// ones with a short Status; 12 PoolAllocation updates answered with the object, 500
	// bytes as its GETs answered it (no watch event to measure it by); the GETs' answers
	// are measured, not estimated; /metrics is no API object
	if r.WriteBytesEstimate != 16000+6000 || r.Requests["PUT underpool.io/ippools/status"] != 16 || r.Requests["PUT underpool.io/ippools/status 409"] != 4 ||
		r.Requests["GET underpool.io/ippools"] != 4 || r.Requests["PUT underpool.io/poolallocations"] != 12 ||
		r.Requests["GET underpool.io/poolallocations"] != 4 || len(r.Requests) != 5 {
		t.Errorf("write estimate %g, requests %v", r.WriteBytesEstimate, r.Requests)
	}
	// 3 s of CPU in 20 s, 0.1 s/s of it idle
	if r.APIServerCPUSeconds != 3 || math.Abs(r.APIServerCPUNetSeconds-1) > 1e-9 || r.EtcdCPUSeconds != 1 {
		t.Errorf("cpu %g net %g etcd %g", r.APIServerCPUSeconds, r.APIServerCPUNetSeconds, r.EtcdCPUSeconds)
	}
	if r.AddP50Ms != 50 || r.AddP99Ms != 90 || r.AddMaxMs != 90 || r.DelP99Ms != 5 || r.AddFailed != 1 ||
		r.AddFailures["code 11: exhausted"] != 1 || r.DelFailed != 0 || r.LateStarts != 1 || r.MaxLateMs != 1000 {
		t.Errorf("samples: %+v", r)
	}
	if r.Allocations != 10 || r.Allocating != 1 || r.Idle != 2 || r.LoadBefore != "1.00 2.00 3.00" {
		t.Errorf("run: %+v", r)
	}
}

func TestAllocProjectionScalesOnlyWhatGrowsWithTheNodes(t *testing.T) {
	r := churnInputs().results(defaultAllocOptions(), 4096, 2048, 9000)
	r.project(3000) // 1000x the 3 watchers
	rows := map[string]projectionRow{}
	for _, row := range r.Projection.Rows {
		rows[row.Measure] = row
	}
	want := map[string][2]float64{
		"IPPool watch events per idle ipamd, per allocation":      {1.1, 1.1},                            // flat
		"IPPool watch events per idle ipamd, per second":          {1.1, 1100},                           // linear in nodes
		"IPPool watch bytes per idle ipamd, per allocation":       {1100, 1100},                          // 11 events of 1000 B over 10
		"IPPool watch events the apiserver sends, per allocation": {3.6, 3600},                           // linear in watchers
		"watch bytes the apiserver sends, per allocation":         {4600, 3600000 + 1000},                // pool part x1000
		"read response bytes (GET, LIST), per allocation":         {600, 600},                            // flat
		"write response bytes (estimated), per allocation":        {2200, 2200},                          // flat
		"apiserver egress, per allocation":                        {7400, 3600000 + 1000 + 2800},         // the sum
		"apiserver CPU ms (net of idle), per allocation":          {100, 100 * (3.8/7.4 + 3.6/7.4*1000)}, // pool share 3600/7400
		// nobody watches PoolAllocations: nothing to project, whatever the nodes
		"PoolAllocation watch events per idle ipamd, per allocation":      {0, 0},
		"PoolAllocation watch events the apiserver sends, per allocation": {0, 0},
		"pool commit conflicts (each a retry), per allocation":            {0.4, 0.4},
		"ADD latency p99, ms": {90, 90},
	}
	for m, w := range want {
		row, ok := rows[m]
		if !ok {
			t.Errorf("no row %q", m)
			continue
		}
		if math.Abs(row.Measured-w[0]) > 1e-6*max(1, w[0]) || math.Abs(row.Projected-w[1]) > 1e-6*max(1, w[1]) {
			t.Errorf("%s: %g -> %g, want %g -> %g", m, row.Measured, row.Projected, w[0], w[1])
		}
	}
	if r.Projection.Scale != 1000 || r.Projection.Watchers != 3 {
		t.Errorf("scale %g from %g watchers", r.Projection.Scale, r.Projection.Watchers)
	}
	// were the nodes watching the allocation state, its events would grow with them
	r.AllocWatchers, r.AllocEventsSent, r.AllocEventBytes, r.WatchBytes = 3, 36, 18000, r.WatchBytes+18000
	r.Projection = allocProjection{}
	r.project(3000)
	for _, row := range r.Projection.Rows {
		switch row.Measure {
		case "PoolAllocation watch events the apiserver sends, per allocation":
			if row.Projected != 3600 || row.How != howWatchers {
				t.Errorf("watched PoolAllocations: %+v, want 3.6 -> 3600 linear in watchers", row)
			}
		case "watch bytes the apiserver sends, per allocation":
			if want := (54000*1000 + 10000) / 10.0; math.Abs(row.Projected-want) > 1e-6*want {
				t.Errorf("watched PoolAllocations: watch bytes projected %g, want %g", row.Projected, want)
			}
		}
	}
}

func TestAllocReportRendersEveryFigureAndSaysHowItWasProjected(t *testing.T) {
	r := churnInputs().results(defaultAllocOptions(), 4096, 2048, 9000)
	r.project(5000)
	text := r.markdown(defaultClusterOptions())
	for _, want := range []string{
		"## Allocation churn on one shared, fragmented pool", "2048 runs: its PoolAllocation's state.allocated 9000 bytes",
		"| IPPool watch events per ipamd (`underpool_ipamd_watch_events_total{resource=\"ippools\"}`), mean [min-max] | 12 [12-12] | 11 [10-12] |",
		"| PoolAllocation watch events per ipamd (`{resource=\"poolallocations\"}`: no node watches them), mean [min-max] | 0 [0-0] | 0 [0-0] |",
		"0 watchers (open PoolAllocation watches", "PUT underpool.io/poolallocations 1.20",
		"3 watchers", "**egress in all**", "net of idle (100 ms/s", "**0.40**", "ok 10",
		"PUT underpool.io/ippools/status 1.60", "| ADD | **50 ms** | **90 ms** (max 90) | 1: code 11: exhausted 1 |",
		"(1.0/s achieved), 1 starts more than 100ms late", "Load average (1, 5, 15 min) 1.00 2.00 3.00 before",
		"### Projection to 5000 nodes", "| IPPool watch events per idle ipamd, per second | 1.10 | 1833 | linear in nodes |",
		"linear in watchers", "split",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("report lacks %q:\n%s", want, text)
		}
	}
	skipped := (&allocReport{Skipped: "--alloc-rate 0"}).markdown(defaultClusterOptions())
	if !strings.Contains(skipped, "Skipped: --alloc-rate 0.") || strings.Contains(skipped, "Projection") {
		t.Errorf("skipped phase:\n%s", skipped)
	}
}

// The allocation churn at a tiny size, end to end: real apiserver, real ipamds, the real
// plugin binary. Every allocation succeeds, the idle ipamd receives nothing of the others'
// allocations (the state is in a PoolAllocation no node watches, and no controller runs
// here to mirror counts onto the IPPool), and the report holds the figures. No timing is
// asserted.
func TestAllocationChurnPhaseSmoke(t *testing.T) {
	harness.RequireRoot(t)
	o := defaultClusterOptions()
	o.ipamds, o.nodes, o.endpoints, o.pools, o.churn = 3, 5, 12, 1, 0
	o.window, o.gcInterval = time.Second, time.Second
	o.settle, o.probeSettle, o.drain = time.Second, 0, 2*time.Second
	o.reserveMiB, o.out = 0, t.TempDir()
	o.alloc = allocOptions{rate: 10, window: 2 * time.Second, ipamds: 2, inflight: 4, poolSize: 64}
	rep, err := runCluster(o)
	if err != nil {
		t.Fatal(err)
	}
	a := rep.Alloc
	if a.Allocations != 20 || a.AddFailed != 0 || a.DelFailed != 0 || a.Allocating != 2 || a.Idle != 1 {
		t.Fatalf("allocations %d (ADD failed %d: %v; DEL failed %d: %v), %d allocating, %d idle",
			a.Allocations, a.AddFailed, a.AddFailures, a.DelFailed, a.DelFailures, a.Allocating, a.Idle)
	}
	if a.Held != 32 || a.AllocResults["ok"] != 20 || a.Commits < 1 || a.AddP50Ms <= 0 || a.AddP99Ms < a.AddP50Ms {
		t.Errorf("held %d, results %v, commits %g, ADD p50 %g p99 %g", a.Held, a.AllocResults, a.Commits, a.AddP50Ms, a.AddP99Ms)
	}
	// the idle ipamd allocated nothing and heard nothing of the allocations elsewhere
	if !a.EventsKnown || a.EventsIdle.N != 1 || a.EventsIdle.Max != 0 || a.AllocEventsIdle.Max != 0 {
		t.Errorf("events: idle ipamd IPPool %+v, PoolAllocation %+v; apiserver sent %g IPPool events", a.EventsIdle, a.AllocEventsIdle, a.PoolEventsSent)
	}
	if a.AllocWatchers != 0 || a.AllocEventsSent != 0 || a.Requests["PUT underpool.io/poolallocations"] < 1 {
		t.Errorf("PoolAllocations: %g watchers, %g events sent, requests %v", a.AllocWatchers, a.AllocEventsSent, a.Requests)
	}
	if a.PoolWatchers != 3 || a.APIServerCPUSeconds <= 0 || len(a.Projection.Rows) == 0 {
		t.Errorf("watchers %g, cpu %g, projection %+v", a.PoolWatchers, a.APIServerCPUSeconds, a.Projection)
	}
	text := rep.markdown(o)
	for _, want := range []string{"## Allocation churn on one shared, fragmented pool", "### Projection to 5000 nodes"} {
		if !strings.Contains(text, want) {
			t.Errorf("report lacks %q:\n%s", want, text)
		}
	}
}
