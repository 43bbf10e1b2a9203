package main

import (
	"fmt"
	"sort"
	"strings"
)

// allocProjection carries the churn's figures to Nodes nodes, each running an ipamd.
type allocProjection struct {
	Nodes int
	// Watchers are the IPPool watchers measured (every running ipamd); Scale is Nodes over
	// them, the factor of whatever is linear in watchers.
	Watchers float64
	Scale    float64
	Rows     []projectionRow
}

// projectionRow is one figure, measured and projected, and how it was projected.
type projectionRow struct {
	Measure             string
	Measured, Projected float64
	How                 string
}

const (
	howFlat       = "flat"
	howWatchers   = "linear in watchers"
	howAllocNodes = "linear in nodes"
	howSplit      = "split"
)

// project fills r.Projection. What each ipamd receives per allocation anywhere is flat
// (every ipamd gets whatever IPPool events a commit makes: none since the allocation
// state moved to the PoolAllocation, which no ipamd watches); per second it grows with
// the nodes when the same share of nodes allocates at the same rate each. What the
// apiserver sends per allocation grows with the watchers for IPPool events (and for
// PoolAllocation events, were more than the controller's one watch open) and is flat for
// the rest (a node's own Endpoints and pods go to its own ipamd only). Commits,
// conflicts and latency are flat for as many nodes allocating from the pool at once as
// measured.
func (r *allocReport) project(nodes int) {
	p := &r.Projection
	p.Nodes, p.Watchers = nodes, r.PoolWatchers
	if p.Watchers == 0 {
		p.Watchers = float64(r.Allocating + r.Idle)
	}
	if r.Allocations == 0 || r.Seconds == 0 || p.Watchers == 0 {
		return
	}
	p.Scale = float64(nodes) / p.Watchers
	n := float64(r.Allocations)
	add := func(measure string, measured, factor float64, how string) {
		p.Rows = append(p.Rows, projectionRow{Measure: measure, Measured: measured, Projected: measured * factor, How: how})
	}
	fanout := r.PoolEventBytes // the bytes every ipamd's watch receives
	if r.EventsKnown {
		add("IPPool watch events per idle ipamd, per allocation", r.EventsIdle.Mean/n, 1, howFlat)
		add("PoolAllocation watch events per idle ipamd, per allocation", r.AllocEventsIdle.Mean/n, 1, howFlat)
		add("IPPool watch events per idle ipamd, per second", r.EventsIdle.Mean/r.Seconds, p.Scale, howAllocNodes)
		if r.PoolEventsSent > 0 {
			perEvent := r.PoolEventBytes / r.PoolEventsSent
			add("IPPool watch bytes per idle ipamd, per allocation", r.EventsIdle.Mean*perEvent/n, 1, howFlat)
			add("IPPool watch bytes per idle ipamd, per second", r.EventsIdle.Mean*perEvent/r.Seconds, p.Scale, howAllocNodes)
		}
	}
	add("IPPool watch events the apiserver sends, per allocation", r.PoolEventsSent/n, p.Scale, howWatchers)
	if r.AllocWatchers > 1 {
		// more than the controller's watch: nodes watch the allocation state, and its
		// events grow with them as the IPPool's do
		add("PoolAllocation watch events the apiserver sends, per allocation", r.AllocEventsSent/n, p.Scale, howWatchers)
		fanout += r.AllocEventBytes
	} else {
		add("PoolAllocation watch events the apiserver sends, per allocation", r.AllocEventsSent/n, 1, howFlat)
	}
	other := r.WatchBytes - fanout
	watch := projectionRow{Measure: "watch bytes the apiserver sends, per allocation", Measured: r.WatchBytes / n,
		Projected: (fanout*p.Scale + other) / n, How: howSplit}
	p.Rows = append(p.Rows, watch)
	add("read response bytes (GET, LIST), per allocation", r.ReadBytes/n, 1, howFlat)
	add("write response bytes (estimated), per allocation", r.WriteBytesEstimate/n, 1, howFlat)
	egress := r.WatchBytes + r.ReadBytes + r.WriteBytesEstimate
	projEgress := watch.Projected*n + r.ReadBytes + r.WriteBytesEstimate
	p.Rows = append(p.Rows, projectionRow{Measure: "apiserver egress, per allocation", Measured: egress / n, Projected: projEgress / n, How: howSplit})
	if egress > 0 {
		// a model: the CPU split as the bytes are, the IPPool fan-out's share growing with
		// the watchers (an upper estimate: an event is encoded once for all watchers)
		share := fanout / egress
		cpu := r.APIServerCPUNetSeconds * 1000 / n
		p.Rows = append(p.Rows, projectionRow{Measure: "apiserver CPU ms (net of idle), per allocation", Measured: cpu,
			Projected: cpu * ((1 - share) + share*p.Scale), How: howSplit})
	}
	add("pool commits, per allocation", r.Commits/n, 1, howFlat)
	add("pool commit conflicts (each a retry), per allocation", r.Conflicts/n, 1, howFlat)
	add("ADD latency p50, ms", r.AddP50Ms, 1, howFlat)
	add("ADD latency p99, ms", r.AddP99Ms, 1, howFlat)
}

// markdown renders the allocation churn's section of the report.
func (r *allocReport) markdown(o clusterOptions) string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	w("## Allocation churn on one shared, fragmented pool\n")
	if r.Skipped != "" {
		w("Skipped: %s.\n", r.Skipped)
		return b.String()
	}
	n := float64(max(r.Allocations, 1))
	w("Pool `%s`: %d addresses, every other one held before the ipamds started by an Endpoint on a node without an ipamd "+
		"(%d held, %d runs: its PoolAllocation's state.allocated %d bytes). %d allocations (ADD then DEL of one pod through the underpool-ipam binary) "+
		"started at %g/s for %.0f s on %d ipamds while %d only watched, at most %d plugin processes at once; "+
		"%.1f s from the first start to the last finish (%.1f/s achieved), %d starts more than %s late (waiting for a plugin slot; longest %.0f ms). "+
		"Load average (1, 5, 15 min) %s before, %s after, on a shared 2-core machine.\n",
		allocPoolName, r.PoolSize, r.Held, r.Held, r.AllocatedBytes, r.Allocations, r.Rate, r.WindowSeconds, r.Allocating, r.Idle,
		r.Inflight, r.Seconds, float64(r.Allocations)/max(r.Seconds, 1e-9), r.LateStarts, lateThreshold, r.MaxLateMs, r.LoadBefore, r.LoadAfter)

	w("| measure | allocating ipamds (%d) | idle ipamds (%d) |", r.Allocating, r.Idle)
	w("|---|---:|---:|")
	if r.EventsKnown {
		w("| IPPool watch events per ipamd (`%s{resource=\"ippools\"}`), mean [min-max] | %s | %s |",
			ipamdWatchEventsMetric, r.EventsAllocating.cell(), r.EventsIdle.cell())
		if r.PoolEventsSent > 0 {
			per := r.PoolEventBytes / r.PoolEventsSent
			w("| IPPool watch bytes per ipamd (its events x the mean IPPool event, %s from `apiserver_watch_events_sizes`) | %s | %s |",
				bytesCell(per), bytesCell(r.EventsAllocating.Mean*per), bytesCell(r.EventsIdle.Mean*per))
		}
		w("| IPPool watch events per ipamd per allocation | %.2f | %.2f |", r.EventsAllocating.Mean/n, r.EventsIdle.Mean/n)
		w("| PoolAllocation watch events per ipamd (`{resource=\"poolallocations\"}`: no node watches them), mean [min-max] | %s | %s |",
			r.AllocEventsAllocating.cell(), r.AllocEventsIdle.cell())
	} else {
		w("| IPPool watch events per ipamd | n/a (not in this ipamd) | n/a |")
	}
	w("")

	watchers := r.Projection.Watchers
	w("| apiserver, for the %d allocations | total | per allocation |", r.Allocations)
	w("|---|---:|---:|")
	w("| IPPool watch events sent to all watchers (`apiserver_watch_events_total`); %.0f watchers (open IPPool watches) | %.0f | %.1f |",
		watchers, r.PoolEventsSent, r.PoolEventsSent/n)
	if watchers > 0 {
		w("| of those, per watcher (total / watchers) | %.0f | %.2f |", r.PoolEventsSent/watchers, r.PoolEventsSent/watchers/n)
	}
	w("| IPPool watch bytes to all watchers (`apiserver_watch_events_sizes_sum`) | %s | %s |", bytesCell(r.PoolEventBytes), bytesCell(r.PoolEventBytes/n))
	w("| PoolAllocation watch events sent to all watchers; %.0f watchers (open PoolAllocation watches: the controller's only, none without one) | %.0f | %.2f |",
		r.AllocWatchers, r.AllocEventsSent, r.AllocEventsSent/n)
	w("| PoolAllocation watch bytes to all watchers | %s | %s |", bytesCell(r.AllocEventBytes), bytesCell(r.AllocEventBytes/n))
	w("| egress: watch bytes, every resource | %s | %s |", bytesCell(r.WatchBytes), bytesCell(r.WatchBytes/n))
	w("| egress: GET and LIST responses (`apiserver_response_sizes_sum`) | %s | %s |", bytesCell(r.ReadBytes), bytesCell(r.ReadBytes/n))
	w("| egress: write responses (not measured by the apiserver; 2xx writes x the mean watch event of the resource) | %s | %s |",
		bytesCell(r.WriteBytesEstimate), bytesCell(r.WriteBytesEstimate/n))
	egress := r.WatchBytes + r.ReadBytes + r.WriteBytesEstimate
	w("| **egress in all** | %s | **%s** |", bytesCell(egress), bytesCell(egress/n))
	w("| kube-apiserver CPU (`/proc/<pid>/stat`), gross | %.1f s | %.1f ms |", r.APIServerCPUSeconds, r.APIServerCPUSeconds*1000/n)
	w("| kube-apiserver CPU net of idle (%.0f ms/s in the steady window) | %.1f s | **%.1f ms** |",
		r.BaselineCPUPerSecond*1000, r.APIServerCPUNetSeconds, r.APIServerCPUNetSeconds*1000/n)
	w("| etcd CPU, gross | %.1f s | %.1f ms |", r.EtcdCPUSeconds, r.EtcdCPUSeconds*1000/n)
	w("| pool commits (`underpool_pool_commits_total`, all ipamds) | %.0f | %.2f |", r.Commits, r.Commits/n)
	w("| commit conflicts, each a retry: one GET and another status PUT (`underpool_pool_commit_conflicts_total`) | %.0f | **%.2f** |", r.Conflicts, r.Conflicts/n)
	w("| allocations by result (`underpool_pool_allocations_total`) | %s | |", topCounts(r.AllocResults, 6))
	w("")
	w("API requests per allocation (`apiserver_request_total`): %s.\n", perAllocation(r.Requests, n, 10))

	w("| plugin latency (successful calls) | p50 | p99 | failed |")
	w("|---|---:|---:|---:|")
	w("| ADD | **%.0f ms** | **%.0f ms** (max %.0f) | %d: %s |", r.AddP50Ms, r.AddP99Ms, r.AddMaxMs, r.AddFailed, reasons(r.AddFailures))
	w("| DEL | %.0f ms | %.0f ms | %d: %s |", r.DelP50Ms, r.DelP99Ms, r.DelFailed, reasons(r.DelFailures))
	w("")

	p := r.Projection
	if len(p.Rows) == 0 {
		return b.String()
	}
	w("### Projection to %d nodes (an ipamd on each)\n", p.Nodes)
	w("Arithmetic on the figures above, not a run; x%.0f = %d nodes / %.0f IPPool watchers measured. *flat*: as measured "+
		"(per allocation, each ipamd receives whatever IPPool events a commit makes wherever it ran; commits, conflicts and latency hold for as "+
		"many nodes allocating from the pool at once as here). *linear in watchers*: every IPPool event goes to every ipamd. "+
		"*linear in nodes*: per second, with the same share of nodes allocating at the same rate each, the pool's commits grow "+
		"with the nodes. *split*: the IPPool watch part (and the PoolAllocation one, were nodes watching it) linear in watchers, the rest flat; for CPU a model, the net CPU split "+
		"as the egress bytes are (an upper estimate of the fan-out: an event is encoded once for all its watchers).\n",
		p.Scale, p.Nodes, p.Watchers)
	w("| measure | measured | projected | how |")
	w("|---|---:|---:|---|")
	for _, row := range p.Rows {
		w("| %s | %s | %s | %s |", row.Measure, figure(row.Measure, row.Measured), figure(row.Measure, row.Projected), row.How)
	}
	w("")
	return b.String()
}

func (g groupStat) cell() string {
	if g.N == 0 {
		return "none"
	}
	return fmt.Sprintf("%.0f [%.0f-%.0f]", g.Mean, g.Min, g.Max)
}

// figure formats a projection value: bytes for byte rows, else a number.
func figure(measure string, v float64) string {
	if strings.Contains(measure, "bytes") || strings.Contains(measure, "egress") {
		return bytesCell(v)
	}
	if v != 0 && v < 10 {
		return fmt.Sprintf("%.2f", v)
	}
	return fmt.Sprintf("%.0f", v)
}

func bytesCell(v float64) string {
	switch {
	case v >= 1<<30:
		return fmt.Sprintf("%.2f GiB", v/(1<<30))
	case v >= 1<<20:
		return fmt.Sprintf("%.1f MiB", v/(1<<20))
	case v >= 1<<10:
		return fmt.Sprintf("%.1f KiB", v/(1<<10))
	}
	return fmt.Sprintf("%.0f B", v)
}

// perAllocation renders the largest counts divided by n: "UPDATE x/y 1.02, ...".
func perAllocation(m map[string]float64, n float64, top int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return m[keys[i]] > m[keys[j]] || (m[keys[i]] == m[keys[j]] && keys[i] < keys[j]) })
	var parts []string
	for i, k := range keys {
		if i == top {
			parts = append(parts, "...")
			break
		}
		parts = append(parts, fmt.Sprintf("%s %.2f", k, m[k]/n))
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

func reasons(m map[string]int) string {
	if len(m) == 0 {
		return "none"
	}
	f := map[string]float64{}
	for k, v := range m {
		f[k] = float64(v)
	}
	return topCounts(f, 5)
}
