package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// maxErrors bounds the distinct error messages kept per phase: the count is exact,
// a few samples are enough to see why.
const maxErrors = 5

// result is one (IPAM, parallelism, op) row.
type result struct {
	IPAM          string   `json:"ipam"`
	Parallel      int      `json:"parallel"`
	Op            string   `json:"op"`
	Pods          int      `json:"pods"`
	Failed        int      `json:"failed"`
	TotalSeconds  float64  `json:"totalSeconds"`
	PodsPerSecond float64  `json:"podsPerSecond"` // successful ops per wall-clock second
	P50ms         float64  `json:"p50Ms"`
	P99ms         float64  `json:"p99Ms"`
	Errors        []string `json:"errors,omitempty"` // up to maxErrors distinct messages
	// Held is what the IPAM holds after this phase, cumulative over the IPAM's runs:
	// after ADD it must have grown by the successful ADDs, after DEL it must be 0.
	Held       *int   `json:"held,omitempty"`
	HeldDetail string `json:"heldDetail,omitempty"`
	// APIPerPod is the apiserver's count of requests served during the phase, per pod;
	// APIDetail splits it by verb and resource.
	APIPerPod float64 `json:"apiRequestsPerPod"`
	APIDetail string  `json:"apiRequests,omitempty"`
	// CPUPerPod is the CPU milliseconds per pod the plugin processes and each daemon
	// (ipamd, kube-apiserver, etcd) used during the phase.
	CPUPerPod map[string]float64 `json:"cpuMsPerPod,omitempty"`
}

// summarize turns raw timings into a row. Latency percentiles cover every call,
// failed ones included (a failure still cost the pod that long); throughput counts
// only successes, so failing fast cannot look like being fast.
func summarize(ipamName string, par int, op string, st *opStats) *result {
	r := &result{IPAM: ipamName, Parallel: par, Op: op, Pods: len(st.Latencies), TotalSeconds: st.Wall.Seconds()}
	for _, err := range st.Errors {
		if err == nil {
			continue
		}
		r.Failed++
		if msg := err.Error(); len(r.Errors) < maxErrors && !slices.Contains(r.Errors, msg) {
			r.Errors = append(r.Errors, msg)
		}
	}
	if r.TotalSeconds > 0 {
		r.PodsPerSecond = float64(r.Pods-r.Failed) / r.TotalSeconds
	}
	lat := slices.Clone(st.Latencies)
	slices.Sort(lat)
	r.P50ms = ms(percentile(lat, 0.50))
	r.P99ms = ms(percentile(lat, 0.99))
	return r
}

// percentile is the nearest-rank percentile of sorted values: with 100 pods p99 is
// the second slowest call, not an interpolation between samples.
func percentile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// ratio is one of the project's targets, computed from the rows.
type ratio struct {
	Name   string   `json:"name"`
	Value  *float64 `json:"value"` // nil when an input is missing (IPAM not run, zero throughput)
	Target string   `json:"target"`
	Met    *bool    `json:"met"`
}

type report struct {
	Timestamp time.Time `json:"timestamp"`
	Pods      int       `json:"pods"`
	Parallel  []int     `json:"parallel"`
	IPAMs     []string  `json:"ipams"`
	Host      struct {
		GoVersion string `json:"goVersion"`
		CPUs      int    `json:"cpus"`
		Kernel    string `json:"kernel"`
	} `json:"host"`
	Results []*result `json:"results"`
	// Leftovers is what each IPAM still holds after its last DEL phase.
	Leftovers map[string]int `json:"leftovers"`
	// RatioParallel is the parallelism the ratios compare at: 16 when run, else the highest.
	RatioParallel int     `json:"ratioParallel"`
	Ratios        []ratio `json:"ratios"`
	// Density is the density curve per IPAM (--density), in run order.
	Density []*densityResult `json:"density,omitempty"`
	// Interrupted counts, per IPAM, the "netlink call interrupted" lines its runs left
	// in the plugin logs: a dump the other ADDs kept interrupting until it gave up.
	Interrupted map[string]int `json:"netlinkInterrupted"`
	// PoolSize is --pool-size: addresses per pool, 0 for a block of twice the pods.
	PoolSize int `json:"poolSize,omitempty"`
}

func newReport(opts *options) *report {
	r := &report{Timestamp: time.Now(), Pods: opts.pods, Parallel: opts.parallel, IPAMs: opts.ipams, Leftovers: map[string]int{}, Interrupted: map[string]int{}, PoolSize: opts.poolSize}
	r.Host.GoVersion = runtime.Version()
	r.Host.CPUs = runtime.NumCPU()
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		r.Host.Kernel = strings.TrimSpace(string(b))
	}
	r.RatioParallel = 16
	if !slices.Contains(opts.parallel, 16) {
		r.RatioParallel = slices.Max(opts.parallel)
	}
	return r
}

func (r *report) add(rows ...*result) {
	r.Results = append(r.Results, rows...)
	for _, row := range rows {
		if row.Held != nil && row.Op == "DEL" {
			r.Leftovers[row.IPAM] = *row.Held
		}
	}
}

func (r *report) find(ipamName, op string, par int) *result {
	for _, row := range r.Results {
		if row.IPAM == ipamName && row.Op == op && row.Parallel == par {
			return row
		}
	}
	return nil
}

// finish computes the ratios the project targets, at RatioParallel.
func (r *report) finish() {
	par := r.RatioParallel
	up := r.find(ipamUnderpool, "ADD", par)
	hl := r.find(ipamHostLocal, "ADD", par)
	wb := r.find(ipamWhereabouts, "ADD", par)
	mk := func(name, target string, num, den *result, field func(*result) float64, ok func(float64) bool) {
		rt := ratio{Name: name, Target: target}
		if num != nil && den != nil && field(den) > 0 {
			v := field(num) / field(den)
			met := ok(v)
			rt.Value, rt.Met = &v, &met
		}
		r.Ratios = append(r.Ratios, rt)
	}
	pps := func(x *result) float64 { return x.PodsPerSecond }
	p99 := func(x *result) float64 { return x.P99ms }
	mk(fmt.Sprintf("underpool/host-local ADD pods/s at %d parallel", par), ">= 0.8", up, hl, pps, func(v float64) bool { return v >= 0.8 })
	mk(fmt.Sprintf("underpool/whereabouts ADD pods/s at %d parallel", par), ">= 10", up, wb, pps, func(v float64) bool { return v >= 10 })
	mk(fmt.Sprintf("underpool/host-local p99 ADD latency at %d parallel", par), "<= 2", up, hl, p99, func(v float64) bool { return v <= 2 })
	// what the underlay checks cost: reported, no target
	p50 := func(x *result) float64 { return x.P50ms }
	pars := []int{1}
	if par != 1 {
		pars = append(pars, par)
	}
	for _, p := range pars {
		nc := r.find(ipamUnderpoolNoChecks, "ADD", p)
		on := r.find(ipamUnderpool, "ADD", p)
		mk(fmt.Sprintf("underpool checks on/off p50 ADD latency at %d parallel", p), "(cost)", on, nc, p50, func(float64) bool { return true })
		mk(fmt.Sprintf("underpool checks on/off p99 ADD latency at %d parallel", p), "(cost)", on, nc, p99, func(float64) bool { return true })
	}
	// issue 11's table: total ADD time side by side at every parallelism run, the IPAM
	// path alone (<= 1.25x host-local's) and the full path with defaults (<= 1.5x
	// host-local's, below whereabouts')
	secs := func(x *result) float64 { return x.TotalSeconds }
	for _, p := range r.Parallel {
		mk(fmt.Sprintf("underpool-ipam/host-local-ipam ADD time at %d parallel", p), "<= 1.25",
			r.find(ipamUnderpoolIPAM, "ADD", p), r.find(ipamHostLocalIPAM, "ADD", p), secs, func(v float64) bool { return v <= 1.25 })
		mk(fmt.Sprintf("underpool/host-local ADD time at %d parallel", p), "<= 1.5",
			r.find(ipamUnderpool, "ADD", p), r.find(ipamHostLocal, "ADD", p), secs, func(v float64) bool { return v <= 1.5 })
		mk(fmt.Sprintf("underpool/whereabouts ADD time at %d parallel", p), "< 1",
			r.find(ipamUnderpool, "ADD", p), r.find(ipamWhereabouts, "ADD", p), secs, func(v float64) bool { return v < 1 })
	}
	r.Ratios = append(r.Ratios, densityRatios(r.Density)...)
}

// problems lists correctness failures: failed operations and addresses still held.
// Missed performance targets are reported but are not problems.
func (r *report) problems() []string {
	var out []string
	for _, row := range r.Results {
		if row.Failed > 0 {
			out = append(out, fmt.Sprintf("%s %s at %d parallel: %d of %d failed", row.IPAM, row.Op, row.Parallel, row.Failed, row.Pods))
		}
	}
	prev := map[string]int{}
	for _, row := range r.Results {
		switch {
		case row.Held == nil:
		case row.Op == "ADD":
			if want := prev[row.IPAM] + row.Pods - row.Failed; *row.Held != want {
				out = append(out, fmt.Sprintf("%s held %d addresses after ADD at %d parallel, expected %d: its leftover count cannot be trusted",
					row.IPAM, *row.Held, row.Parallel, want))
			}
		case row.Op == "DEL":
			// Checked per run, not only at the end: ipamd's recycler could otherwise
			// quietly clean up an early run's leak before the final count.
			if *row.Held > 0 {
				out = append(out, fmt.Sprintf("%s still held %d addresses after DEL at %d parallel (%s)",
					row.IPAM, *row.Held, row.Parallel, row.HeldDetail))
			}
			prev[row.IPAM] = *row.Held
		}
	}
	for _, name := range r.IPAMs {
		if n := r.Interrupted[name]; n > 0 && strings.HasPrefix(name, ipamUnderpool) {
			out = append(out, fmt.Sprintf("%s: %d %q lines in the plugin logs: a per-ADD dump of the node raced the other ADDs", name, n, interruptedDump))
		}
	}
	return append(out, densityProblems(r.Density)...)
}

func (r *report) print(w io.Writer) {
	fmt.Fprintf(w, "\nunderpool bench %s: %d pods per run, %d CPUs, %s\n\n",
		r.Timestamp.Format(time.RFC3339), r.Pods, r.Host.CPUs, r.Host.GoVersion)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "ipam\tparallel\top\tpods\tfailed\ttotal s\tpods/s\tp50 ms\tp99 ms\theld after\tAPI req/pod\t")
	for _, row := range r.Results {
		fmt.Fprintf(tw, "%s\t%d\t%s\t%d\t%d\t%.2f\t%.1f\t%.1f\t%.1f\t%s\t%.2f\t\n", row.IPAM, row.Parallel, row.Op,
			row.Pods, row.Failed, row.TotalSeconds, row.PodsPerSecond, row.P50ms, row.P99ms, heldCell(row), row.APIPerPod)
	}
	tw.Flush()
	printDensity(w, r.Density)
	fmt.Fprintln(w, "\nleft over after all DELs:")
	for _, name := range r.IPAMs {
		detail := ""
		for _, row := range r.Results {
			if row.IPAM == name && row.Op == "DEL" && row.Held != nil {
				detail = row.HeldDetail
			}
		}
		fmt.Fprintf(w, "  %-16s %d  (%s)\n", name, r.Leftovers[name], detail)
	}
	fmt.Fprintf(w, "\n%q in the plugin logs:", interruptedDump)
	for _, name := range r.IPAMs {
		fmt.Fprintf(w, " %s %d;", name, r.Interrupted[name])
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "\ntargets:")
	for _, rt := range r.Ratios {
		fmt.Fprintf(w, "  %-62s %8s  target %-6s  %s\n", rt.Name, ratioValue(rt), rt.Target, ratioVerdict(rt))
	}
	if p := r.problems(); len(p) > 0 {
		fmt.Fprintln(w, "\nPROBLEMS:")
		for _, s := range p {
			fmt.Fprintln(w, "  "+s)
		}
	}
	fmt.Fprintln(w)
}

func heldCell(row *result) string {
	if row.Held == nil {
		return "-"
	}
	return fmt.Sprint(*row.Held)
}

func ratioValue(rt ratio) string {
	if rt.Value == nil {
		return "n/a"
	}
	return fmt.Sprintf("%.2fx", *rt.Value)
}

func ratioVerdict(rt ratio) string {
	switch {
	case rt.Met == nil:
		return "(not measured)"
	case strings.HasPrefix(rt.Target, "("): // (cost), (ref): reported, no target
		return ""
	case *rt.Met:
		return "met"
	default:
		return "MISSED"
	}
}

// markdown renders the same content as print, for pasting into docs and PRs.
func (r *report) markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "# underpool bench %s\n\n", r.Timestamp.Format(time.RFC3339))
	pool := "a block of twice the pods per IPAM"
	if r.PoolSize > 0 {
		pool = fmt.Sprintf("pools of exactly %d addresses", r.PoolSize)
	}
	fmt.Fprintf(&b, "%d pods per run, parallelism %v, %s, %d CPUs, %s, kernel %s. Every plugin runs in a netns standing for the node.\n\n",
		r.Pods, r.Parallel, pool, r.Host.CPUs, r.Host.GoVersion, r.Host.Kernel)
	b.WriteString("| ipam | parallel | op | pods | failed | total s | pods/s | p50 ms | p99 ms | held after | API requests per pod | CPU ms per pod |\n")
	b.WriteString("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---|---|\n")
	for _, row := range r.Results {
		fmt.Fprintf(&b, "| %s | %d | %s | %d | %d | %.2f | %.1f | %.1f | %.1f | %s | %.2f (%s) | %s |\n", row.IPAM, row.Parallel, row.Op,
			row.Pods, row.Failed, row.TotalSeconds, row.PodsPerSecond, row.P50ms, row.P99ms, heldCell(row), row.APIPerPod, row.APIDetail,
			cpuCell(row.CPUPerPod))
	}
	markdownDensity(&b, r.Density)
	b.WriteString("\n| target | value | goal | verdict |\n|---|---:|---|---|\n")
	for _, rt := range r.Ratios {
		fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", rt.Name, ratioValue(rt), rt.Target, ratioVerdict(rt))
	}
	if p := r.problems(); len(p) > 0 {
		b.WriteString("\n**Problems:**\n\n")
		for _, s := range p {
			fmt.Fprintf(&b, "- %s\n", s)
		}
	}
	var errs []string
	for _, row := range r.Results {
		for _, e := range row.Errors {
			errs = append(errs, fmt.Sprintf("- %s %s @%d: `%s`", row.IPAM, row.Op, row.Parallel, e))
		}
	}
	if len(errs) > 0 {
		b.WriteString("\nSample errors:\n\n" + strings.Join(errs, "\n") + "\n")
	}
	return b.String()
}

// write stores bench-<timestamp>.json and .md in dir and returns their paths.
func (r *report) write(dir string) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	base := filepath.Join(dir, "bench-"+r.Timestamp.Format("20060102-150405"))
	js, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return nil, err
	}
	files := map[string][]byte{base + ".json": append(js, '\n'), base + ".md": []byte(r.markdown())}
	paths := []string{base + ".json", base + ".md"}
	for _, p := range paths {
		if err := os.WriteFile(p, files[p], 0o644); err != nil {
			return nil, err
		}
	}
	return paths, nil
}
