package main

import (
	"errors"
	"fmt"
	"math"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/containernetworking/cni/pkg/types"
)

// allocReport is the allocation churn's result (rep.Alloc).
type allocReport struct {
	Skipped string `json:",omitempty"`
	// the pool: its addresses, those held before the run (every other one), and the
	// length of its PoolAllocation's state.allocated then
	PoolSize, Held, AllocatedBytes int
	// what ran: allocations (ADD then DEL of one pod) started at Rate per second for
	// WindowSeconds on Allocating ipamds while Idle ones only watched; Seconds from the
	// first start to the last finish.
	Allocations, Allocating, Idle, Inflight int
	Rate, WindowSeconds, Seconds            float64
	// LateStarts waited more than lateThreshold for a free plugin slot; MaxLateMs the longest.
	LateStarts int
	MaxLateMs  float64
	// LoadBefore and LoadAfter are /proc/loadavg around the churn (1, 5, 15 minutes).
	LoadBefore, LoadAfter string

	// IPPool watch events each ipamd's informer delivered (underpool_ipamd_watch_events_total
	// {resource="ippools"}), by group; EventsKnown is false when the ipamds lack the metric.
	EventsAllocating, EventsIdle groupStat
	EventsKnown                  bool
	// AllocEventsAllocating and AllocEventsIdle are the PoolAllocation watch events each
	// ipamd delivered ({resource="poolallocations"}, 0 when it has no such informer): no
	// node watches the allocation state, so both should be 0.
	AllocEventsAllocating, AllocEventsIdle groupStat
	// PoolWatchers are the open IPPool watches at the apiserver afterwards
	// (apiserver_longrunning_requests{verb="WATCH",resource="ippools"}): the divisor of its
	// totals; 0 when it does not say (the ipamds' count is used then).
	PoolWatchers float64
	// what the apiserver sent: IPPool watch events and their bytes to all watchers
	// (apiserver_watch_events_total, apiserver_watch_events_sizes_sum), all watch bytes,
	// read response bytes (apiserver_response_sizes_sum: GET and LIST only), and an
	// estimate of the write responses it does not measure (writes x the mean watch event
	// size of the same resource).
	PoolEventsSent, PoolEventBytes, WatchBytes, ReadBytes, WriteBytesEstimate float64
	// the same for PoolAllocations: the events and bytes the apiserver sent, and the open
	// watches afterwards (only the elected controller's is expected; the scale runs start
	// no controller, so none)
	AllocEventsSent, AllocEventBytes, AllocWatchers float64
	// Requests are apiserver_request_total's increase by "VERB group/resource[/subresource]",
	// with the code appended for answers other than 2xx (a lost commit is "... 409").
	Requests map[string]float64
	// APIServerCPUSeconds is kube-apiserver's utime+stime over the churn and drain;
	// BaselineCPUPerSecond its rate in the steady window (no churn), subtracted for the net.
	APIServerCPUSeconds, APIServerCPUNetSeconds, BaselineCPUPerSecond, EtcdCPUSeconds float64
	// Commits and Conflicts sum underpool_pool_commits_total and
	// underpool_pool_commit_conflicts_total (each conflict is one retry) over every ipamd;
	// AllocResults underpool_pool_allocations_total{pool=<the pool>} by result.
	Commits, Conflicts float64
	AllocResults       map[string]float64
	// latency of the plugin processes, successful calls only, in milliseconds
	AddP50Ms, AddP99Ms, AddMaxMs, DelP50Ms, DelP99Ms float64
	// failures by reason (failureReason)
	AddFailed, DelFailed     int
	AddFailures, DelFailures map[string]int
	Projection               allocProjection
}

// groupStat is a figure over a group of ipamds.
type groupStat struct {
	N              int
	Mean, Min, Max float64
}

func statOf(xs []float64) groupStat {
	if len(xs) == 0 {
		return groupStat{}
	}
	g := groupStat{N: len(xs), Min: xs[0], Max: xs[0]}
	for _, x := range xs {
		g.Mean += x / float64(len(xs))
		g.Min, g.Max = min(g.Min, x), max(g.Max, x)
	}
	return g
}

// lateThreshold: a start later than this behind its schedule means the plugin slots
// (--alloc-inflight) were all busy, so the offered rate was not met.
const lateThreshold = 100 * time.Millisecond

// allocInputs is what the results are computed from.
type allocInputs struct {
	before, after allocSnapshot
	samples       []allocSample
	allocating    int     // the first this many ipamds allocated
	seconds       float64 // churn: first start to last finish
	baselineCPU   float64 // apiserver CPU seconds per second with no churn (0: unknown)
}

func (in allocInputs) results(a allocOptions, poolSize, held, allocBytes int) allocReport {
	r := allocReport{PoolSize: poolSize, Held: held, AllocatedBytes: allocBytes, Allocations: len(in.samples),
		Allocating: in.allocating, Idle: len(in.after.ipamds) - in.allocating, Inflight: a.inflight,
		Rate: a.rate, WindowSeconds: a.window.Seconds(), Seconds: in.seconds,
		LoadBefore: in.before.load, LoadAfter: in.after.load}
	in.ipamdFigures(&r)
	in.apiserverFigures(&r)
	in.sampleFigures(&r)
	return r
}

// ipamdFigures: IPPool watch events per ipamd by group, commits and conflicts summed.
func (in allocInputs) ipamdFigures(r *allocReport) {
	var allocating, idle, allocAllocating, allocIdle []float64
	r.AllocResults = map[string]float64{}
	for i := range in.after.ipamds {
		b, a := in.before.ipamds[i], in.after.ipamds[i]
		eb, okB := metricByLabel(b, ipamdWatchEventsMetric, "resource")
		ea, okA := metricByLabel(a, ipamdWatchEventsMetric, "resource")
		if okB && okA {
			r.EventsKnown = true
			if i < in.allocating {
				allocating = append(allocating, ea["ippools"]-eb["ippools"])
				allocAllocating = append(allocAllocating, ea["poolallocations"]-eb["poolallocations"])
			} else {
				idle = append(idle, ea["ippools"]-eb["ippools"])
				allocIdle = append(allocIdle, ea["poolallocations"]-eb["poolallocations"])
			}
		}
		r.Commits += counterDelta(a, b, "underpool_pool_commits_total")
		r.Conflicts += counterDelta(a, b, "underpool_pool_commit_conflicts_total")
		rb, _ := metricByLabel(b, "underpool_pool_allocations_total", "pool", "result")
		ra, _ := metricByLabel(a, "underpool_pool_allocations_total", "pool", "result")
		for k, v := range delta(ra, rb) {
			if res, ok := strings.CutPrefix(k, allocPoolName+"/"); ok {
				r.AllocResults[res] += v
			}
		}
	}
	r.EventsAllocating, r.EventsIdle = statOf(allocating), statOf(idle)
	r.AllocEventsAllocating, r.AllocEventsIdle = statOf(allocAllocating), statOf(allocIdle)
}

func counterDelta(after, before, metric string) float64 {
	a, _ := metricByLabel(after, metric)
	b, _ := metricByLabel(before, metric)
	return a[""] - b[""]
}

const (
	poolResource       = "underpool.io/ippools"
	allocationResource = "underpool.io/poolallocations"
)

// apiserverFigures: what the apiserver sent and spent.
func (in allocInputs) apiserverFigures(r *allocReport) {
	b, a := in.before.api, in.after.api
	events := delta(must(apiserverWatchEvents(a)), must(apiserverWatchEvents(b)))
	sizes := delta(must(metricByLabel(a, "apiserver_watch_events_sizes_sum", "group", "resource")),
		must(metricByLabel(b, "apiserver_watch_events_sizes_sum", "group", "resource")))
	r.PoolEventsSent, r.PoolEventBytes, r.WatchBytes = events[poolResource], sizes[poolResource], sum(sizes)
	r.AllocEventsSent, r.AllocEventBytes = events[allocationResource], sizes[allocationResource]
	r.ReadBytes = counterDelta(a, b, "apiserver_response_sizes_sum")
	if w, ok := apiserverWatches(a); ok {
		r.PoolWatchers, r.AllocWatchers = w[poolResource], w[allocationResource]
	}
	getSizes := meanGetSizes(a, b)
	r.Requests = map[string]float64{}
	before := requestsByKey(b)
	for key, v := range requestsByKey(a) {
		if d := v.n - before[key].n; d != 0 {
			r.Requests[key] = d
			switch {
			case !v.write:
			case events[v.resource] > 0:
				r.WriteBytesEstimate += d * sizes[v.resource] / events[v.resource]
			default:
				// nobody watches it (a PoolAllocation): the object as a GET answers it
				r.WriteBytesEstimate += d * getSizes[v.resource]
			}
		}
	}
	r.APIServerCPUSeconds = (in.after.apiCPU - in.before.apiCPU).Seconds()
	r.EtcdCPUSeconds = (in.after.etcdCPU - in.before.etcdCPU).Seconds()
	r.BaselineCPUPerSecond = in.baselineCPU
	r.APIServerCPUNetSeconds = max(0, r.APIServerCPUSeconds-in.baselineCPU*in.after.at.Sub(in.before.at).Seconds())
}

func must(m map[string]float64, _ bool) map[string]float64 { return m }

// meanGetSizes is the mean size of a GET's answer between the snapshots, by
// "group/resource" (apiserver_response_sizes): one object's size, for a resource that
// has no watch events to measure it by.
func meanGetSizes(after, before string) map[string]float64 {
	labels := []string{"verb", "group", "resource", "subresource"}
	sums := delta(must(metricByLabel(after, "apiserver_response_sizes_sum", labels...)),
		must(metricByLabel(before, "apiserver_response_sizes_sum", labels...)))
	counts := delta(must(metricByLabel(after, "apiserver_response_sizes_count", labels...)),
		must(metricByLabel(before, "apiserver_response_sizes_count", labels...)))
	out := map[string]float64{}
	for key, n := range counts {
		if res, ok := strings.CutPrefix(key, "GET/"); ok && n > 0 {
			out[res] = sums[key] / n
		}
	}
	return out
}

// requestCount is apiserver_request_total summed for one "VERB group/resource[/sub]" and,
// unless 2xx, code.
type requestCount struct {
	n        float64
	resource string // "group/resource", as the watch metrics key it
	write    bool   // a write answered 2xx: the answer carries the object (a refusal carries a short Status)
}

func requestsByKey(text string) map[string]requestCount {
	out := map[string]requestCount{}
	for _, s := range metricSamples(text, "apiserver_request_total") {
		verb, res := labelValue(s.labels, "verb"), labelValue(s.labels, "resource")
		if res == "" {
			continue // not an API object (discovery, /metrics)
		}
		if g := labelValue(s.labels, "group"); g != "" {
			res = g + "/" + res
		}
		key := verb + " " + res
		if sub := labelValue(s.labels, "subresource"); sub != "" {
			key += "/" + sub
		}
		code := labelValue(s.labels, "code")
		ok := strings.HasPrefix(code, "2")
		if !ok {
			key += " " + code
		}
		c := out[key]
		c.n += s.value
		c.resource = res
		c.write = ok && (verb == "POST" || verb == "PUT" || verb == "PATCH" || verb == "DELETE" || verb == "APPLY")
		out[key] = c
	}
	return out
}

// sampleFigures: latency percentiles, late starts and failures from the plugin calls.
func (in allocInputs) sampleFigures(r *allocReport) {
	var adds, dels []time.Duration
	r.AddFailures, r.DelFailures = map[string]int{}, map[string]int{}
	for _, s := range in.samples {
		if s.late > lateThreshold {
			r.LateStarts++
		}
		r.MaxLateMs = max(r.MaxLateMs, ms(s.late))
		if s.addErr != nil {
			r.AddFailed++
			r.AddFailures[failureReason(s.addErr)]++
		} else {
			adds = append(adds, s.add)
		}
		if s.delErr != nil {
			r.DelFailed++
			r.DelFailures[failureReason(s.delErr)]++
		} else {
			dels = append(dels, s.del)
		}
	}
	r.AddP50Ms, r.AddP99Ms, r.AddMaxMs = ms(percentile(adds, 50)), ms(percentile(adds, 99)), ms(percentile(adds, 100))
	r.DelP50Ms, r.DelP99Ms = ms(percentile(dels, 50)), ms(percentile(dels, 99))
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// percentile is the nearest-rank p-th percentile (0 < p <= 100) of xs; 0 for none.
func percentile(xs []time.Duration, p float64) time.Duration {
	if len(xs) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), xs...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	rank := int(math.Ceil(p / 100 * float64(len(s))))
	return s[min(max(rank, 1), len(s))-1]
}

var digits = regexp.MustCompile(`[0-9]+`)

// failureReason names why a plugin call failed, coarse enough to count: the CNI error code
// and a keyword for the causes the phase is about (conflict, exhausted, timeout, ipamd
// unavailable), else the message with its numbers (addresses, names) blanked.
func failureReason(err error) string {
	msg, code := err.Error(), ""
	var e *types.Error
	if errors.As(err, &e) {
		msg, code = e.Msg, fmt.Sprintf("code %d: ", e.Code)
	}
	lower := strings.ToLower(msg)
	switch {
	case strings.Contains(lower, "conflict") || strings.Contains(lower, "the object has been modified"):
		return code + "conflict"
	case strings.Contains(lower, "exhausted"):
		return code + "exhausted"
	case strings.Contains(lower, "deadline exceeded") || strings.Contains(lower, "signal: killed") || strings.Contains(lower, "timeout"):
		return code + "timeout"
	case strings.Contains(lower, "not ready") || strings.Contains(lower, "not available"):
		return code + "ipamd unavailable"
	}
	msg = digits.ReplaceAllString(msg, "N")
	if len(msg) > 100 {
		msg = msg[:100] + "..."
	}
	return code + msg
}
