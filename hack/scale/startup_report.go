package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"strings"
	"time"
)

// startupReport is the --startup run's result, written as JSON and markdown.
type startupReport struct {
	Options           startupOptionsReport `json:"options"`
	Started, Finished time.Time
	SetupSeconds      float64      `json:"setupSeconds"`
	Runs              []startupRun `json:"runs"`
}

type startupOptionsReport struct {
	Pods, Pools, Runs int
	PollMs            float64
}

func (o startupOptions) forReport() startupOptionsReport {
	return startupOptionsReport{Pods: o.pods, Pools: o.pools, Runs: o.runs, PollMs: ms(o.poll)}
}

// startupRun is one start of the node's ipamd. Times are ms from the process' start.
type startupRun struct {
	Run int
	// ReadyMs: /readyz answered 200 (to within one poll)
	ReadyMs float64
	// from ipamd's log: its first line, the informers started, Reconcile done, its "ready" line
	StartingMs, InformersMs, ReconciledMs, ReadyLogMs float64
	Reconciled                                        reconciledCounts
	// from the audit log: ipamd's GETs of PoolAllocations (the re-mark's reads), when the
	// first was received (the caches had synced: Reconcile's first API request) and the
	// last answered; RemarkServerMs is the time the apiserver spent on them in all
	// (apiserver_request_duration_seconds_sum)
	RemarkGets                                int
	FirstRemarkMs, LastRemarkMs, RemarkSpanMs float64
	RemarkServerMs                            float64
	IpamdCPUMs, APIServerCPUMs, EtcdCPUMs     float64
	Requests                                  map[string]float64 // apiserver_request_total, start to ready
	Watches                                   map[string]float64 // open watches at ready, over before
	IpamdRequests                             map[string]int     // the audit log's, ipamd's user agent, start to ready
	Load                                      string
}

// reconciledCounts are the fields of ipamd's "reconciled this node's endpoints" line.
type reconciledCounts struct{ Endpoints, Addresses, Pools int }

// fromAudit fills ipamd's requests received in [from, to) and the re-mark's reads.
func (r *startupRun) fromAudit(path string, offset int64, from, to time.Time) error {
	rc, err := countRequests(path, offset, from, to)
	if err != nil {
		return err
	}
	r.IpamdRequests = rc.IpamdByVerbResource
	var first, last time.Time
	seen := map[string]bool{}
	err = readAudit(path, offset, func(ev *auditEvent) {
		ua, _, _ := strings.Cut(ev.UserAgent, " ")
		if ua != ipamdUserAgent+startupNode || ev.Verb != "get" || ev.ObjectRef == nil || ev.ObjectRef.Resource != "poolallocations" ||
			ev.Received.Before(from) || !ev.Received.Before(to) {
			return
		}
		if !seen[ev.AuditID] {
			seen[ev.AuditID] = true
			if first.IsZero() || ev.Received.Before(first) {
				first = ev.Received
			}
		}
		if ev.Stage == "ResponseComplete" && ev.StageAt.After(last) {
			last = ev.StageAt
		}
	})
	r.RemarkGets = len(seen)
	if r.RemarkGets > 0 {
		r.FirstRemarkMs, r.LastRemarkMs = ms(first.Sub(from)), ms(last.Sub(from))
		r.RemarkSpanMs = r.LastRemarkMs - r.FirstRemarkMs
	}
	return err
}

// ipamdLogLine is the part of one of ipamd's JSON log lines (zap's production encoder) read here.
type ipamdLogLine struct {
	TS        float64 `json:"ts"` // seconds since the epoch
	Msg       string  `json:"msg"`
	Endpoints int     `json:"endpoints"`
	Addresses int     `json:"addresses"`
	Pools     int     `json:"pools"`
}

// fromLog fills the phases ipamd logs, as ms after started.
func (r *startupRun) fromLog(path string, started time.Time) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	at := func(ts float64) float64 {
		sec, frac := math.Modf(ts)
		return ms(time.Unix(int64(sec), int64(frac*1e9)).Sub(started))
	}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var l ipamdLogLine
		if json.Unmarshal(sc.Bytes(), &l) != nil {
			continue
		}
		switch l.Msg {
		case "ipamd starting":
			r.StartingMs = at(l.TS)
		case "waiting for informer caches":
			r.InformersMs = at(l.TS)
		case "reconciled this node's endpoints":
			r.ReconciledMs = at(l.TS)
			r.Reconciled = reconciledCounts{Endpoints: l.Endpoints, Addresses: l.Addresses, Pools: l.Pools}
		case "ipamd ready":
			r.ReadyLogMs = at(l.TS)
		}
	}
	return sc.Err()
}

// readySpread is the runs' min, median and max ready time.
func (r *startupReport) readySpread() (lo, mid, hi float64) {
	xs := make([]float64, len(r.Runs))
	for i, run := range r.Runs {
		xs[i] = run.ReadyMs
	}
	if len(xs) == 0 {
		return 0, 0, 0
	}
	lo, hi = xs[0], xs[0]
	for _, x := range xs {
		lo, hi = min(lo, x), max(hi, x)
	}
	return lo, median(xs), hi
}

func (r *startupReport) markdown() string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	o := r.Options
	w("## ipamd start-up with %d pods and %d pools\n", o.Pods, o.Pools)
	w("Run of %s (`go run ./hack/scale --startup --startup-pods %d --startup-pools %d --startup-runs %d`): node %s holds %d pods, "+
		"each with an Endpoint holding one IPv4 address in a pool of its own (%d of the %d pools, a /26 each in 10.250.0.0/16), "+
		"marked in that pool's PoolAllocation; the node's ipamd is started %d times, each time alone, /readyz asked every %.0f ms.\n",
		r.Started.Format("2006-01-02"), o.Pods, o.Pools, o.Runs, startupNode, o.Pods, o.Pods, o.Pools, o.Runs, o.PollMs)
	w("| run | ready | log: first line / informers started | caches synced (first PoolAllocation GET) | re-mark: PoolAllocation GETs, span (apiserver time) | reconciled | CPU ms: ipamd / apiserver / etcd | load |")
	w("|---|---:|---|---:|---|---:|---|---|")
	for _, run := range r.Runs {
		w("| %d | **%.0f ms** | %.0f / %.0f ms | %.0f ms | %d, %.0f ms (%.0f ms) | %.0f ms | %.0f / %.0f / %.0f | %s |",
			run.Run, run.ReadyMs, run.StartingMs, run.InformersMs, run.FirstRemarkMs, run.RemarkGets, run.RemarkSpanMs,
			run.RemarkServerMs, run.ReconciledMs, run.IpamdCPUMs, run.APIServerCPUMs, run.EtcdCPUMs, run.Load)
	}
	lo, mid, hi := r.readySpread()
	verdict := "met"
	if hi >= ms(startupTarget) {
		verdict = "missed by the slowest run"
	}
	if mid >= ms(startupTarget) {
		verdict = "missed"
	}
	w("")
	w("**Ready in min / median / max: %.0f / %.0f / %.0f ms** (target < %.0f ms: %s).\n", lo, mid, hi, ms(startupTarget), verdict)
	w("| run | API requests, start to ready (`apiserver_request_total`) | open watches at ready | ipamd's own (audit log, user agent %s%s) |", ipamdUserAgent, startupNode)
	w("|---|---|---|---|")
	for _, run := range r.Runs {
		w("| %d | %s | %s | %s |", run.Run, topCounts(run.Requests, 12), topCounts(run.Watches, 12), topInts(run.IpamdRequests, 12))
	}
	w("")
	return b.String()
}

func topInts(m map[string]int, n int) string {
	f := make(map[string]float64, len(m))
	for k, v := range m {
		f[k] = float64(v)
	}
	return topCounts(f, n)
}

// write puts the report's JSON and markdown under dir.
func (r *startupReport) write(dir, text string) ([]string, error) {
	return writeReport(dir, "scale-startup-"+r.Started.Format("20060102-150405"), r, text)
}
