package main

import (
	"context"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/underpool/underpool/tests/harness"
)

// densityMarks are the pod counts on one node the density curve reports (issue 11):
// the first pod, a lightly used node, the default and a common raised kubelet
// maxPods, and 1000. Marks above --density are left out; --density itself is always
// the last mark.
var densityMarks = []int{1, 10, 110, 250, 1000}

// densityHalfWidth is how far a window reaches on each side of its mark: one ADD is
// noisy on a shared 2-core machine, the median of ~20 neighbours is not.
const densityHalfWidth = 10

// densityDelParallel is how many DELs run at once when the density run's pods go:
// their latency is not what the curve measures, so the teardown may be quick.
const densityDelParallel = 16

// densityWindow is the median ADD latency over pods From..To (1-based, inclusive),
// the pods around Mark.
type densityWindow struct {
	Mark     int     `json:"mark"`
	From     int     `json:"from"`
	To       int     `json:"to"`
	MedianMs float64 `json:"medianMs"`
}

func (w densityWindow) label() string {
	if w.From == w.To {
		return fmt.Sprintf("pod %d", w.From)
	}
	return fmt.Sprintf("pods %d-%d", w.From, w.To)
}

// densityResult is one IPAM's density curve: pods ADDed one at a time, each on a node
// that already has every earlier pod.
type densityResult struct {
	IPAM       string          `json:"ipam"`
	Pods       int             `json:"pods"`
	Failed     int             `json:"failed"`
	Errors     []string        `json:"errors,omitempty"`
	AddSeconds float64         `json:"addSeconds"`
	DelSeconds float64         `json:"delSeconds"`
	DelFailed  int             `json:"delFailed"`
	DelErrors  []string        `json:"delErrors,omitempty"`
	Windows    []densityWindow `json:"windows"`
	// Growth is the last window's median over the 10th pod's window's: 1.0 means an
	// ADD costs the same on a full node as on an empty one.
	Growth       *float64  `json:"growth,omitempty"`
	HeldAfterAdd *int      `json:"heldAfterAdd,omitempty"`
	Held         *int      `json:"heldAfterDel,omitempty"`
	HeldDetail   string    `json:"heldDetail,omitempty"`
	LatenciesMs  []float64 `json:"latenciesMs"` // per pod, in ADD order
}

// densityWindows lays the windows out for n pods: the first pod alone (cold caches,
// first connection), then [mark-9, mark+10] around each further mark, clipped to
// 2..n, and [n-9, n] for the last pod.
func densityWindows(n int) []densityWindow {
	var marks []int
	for _, m := range densityMarks {
		if m < n {
			marks = append(marks, m)
		}
	}
	marks = append(marks, n)
	var ws []densityWindow
	for i, m := range marks {
		w := densityWindow{Mark: m, From: m, To: m}
		switch {
		case m == 1:
		case i == len(marks)-1:
			w.From, w.To = max(2, m-densityHalfWidth+1), m
		default:
			w.From, w.To = max(2, m-densityHalfWidth+1), min(n, m+densityHalfWidth)
		}
		ws = append(ws, w)
	}
	return ws
}

// summarizeDensity fills the windows and the growth ratio from the per-pod latencies.
func summarizeDensity(name string, add, del *opStats) *densityResult {
	d := &densityResult{IPAM: name, Pods: len(add.Latencies), AddSeconds: add.Wall.Seconds(), DelSeconds: del.Wall.Seconds()}
	d.Failed, d.Errors = countErrors(add.Errors)
	d.DelFailed, d.DelErrors = countErrors(del.Errors)
	for _, l := range add.Latencies {
		d.LatenciesMs = append(d.LatenciesMs, math.Round(ms(l)*100)/100)
	}
	d.Windows = densityWindows(d.Pods)
	for i := range d.Windows {
		w := &d.Windows[i]
		lat := slices.Clone(add.Latencies[w.From-1 : w.To])
		slices.Sort(lat)
		w.MedianMs = ms(percentile(lat, 0.50))
	}
	if base := d.window(10); base != nil && base.MedianMs > 0 && len(d.Windows) > 0 {
		last := d.Windows[len(d.Windows)-1]
		if last.Mark > 10 {
			g := last.MedianMs / base.MedianMs
			d.Growth = &g
		}
	}
	return d
}

func (d *densityResult) window(mark int) *densityWindow {
	for i := range d.Windows {
		if d.Windows[i].Mark == mark {
			return &d.Windows[i]
		}
	}
	return nil
}

func countErrors(errs []error) (int, []string) {
	n, msgs := 0, []string(nil)
	for _, err := range errs {
		if err == nil {
			continue
		}
		n++
		if msg := err.Error(); len(msgs) < maxErrors && !slices.Contains(msgs, msg) {
			msgs = append(msgs, msg)
		}
	}
	return n, msgs
}

// runDensity ADDs n pods to the node one at a time, each ADD timed on a node that
// holds every earlier pod, then DELs them all and counts what the IPAM still holds.
// Namespaces and Pod objects are prepared up front, untimed, as in runOnce; each
// namespace holds only its loopback and the link the plugin adds.
func runDensity(ctx context.Context, env *setupEnv, cni *harness.CNI, ip *ipam, opts *options, live *netnsSet, gate *callGate) (d *densityResult, err error) {
	n := opts.density
	progress("%s: density: preparing %d pods", ip.name, n)
	pods, release, err := preparePods(ctx, env, ip.name, "d", n, live)
	released := false
	defer func() {
		if released {
			return
		}
		if e := release(); e != nil && err == nil {
			err = e
		}
	}()
	if err != nil {
		return nil, err
	}
	progress("%s: density: ADD %d pods one at a time ...", ip.name, n)
	add := runPool(ctx, gate, pods, 1, opts.opTimeout, "density ADD", ip.name, func(ctx context.Context, rt harness.Runtime) error {
		_, err := cni.Add(ctx, ip.conflist, rt)
		return err
	})
	if gate.stopped() {
		return nil, errInterrupted
	}
	heldAdd, _, err := heldSettled(ctx, ip, len(pods))
	if err != nil {
		return nil, fmt.Errorf("%s: counting allocations after the density ADDs: %w", ip.name, err)
	}
	progress("%s: density: DEL %d pods, %d parallel ...", ip.name, n, densityDelParallel)
	del := runPool(ctx, gate, pods, densityDelParallel, opts.opTimeout, "density DEL", ip.name, func(ctx context.Context, rt harness.Runtime) error {
		return cni.Del(ctx, ip.conflist, rt)
	})
	if gate.stopped() {
		return nil, errInterrupted
	}
	released = true
	if err := release(); err != nil {
		return nil, err
	}
	held, detail, err := heldSettled(ctx, ip, 0)
	if err != nil {
		return nil, fmt.Errorf("%s: counting what it still holds after the density DELs: %w", ip.name, err)
	}
	d = summarizeDensity(ip.name, add, del)
	d.HeldAfterAdd, d.Held, d.HeldDetail = &heldAdd, &held, detail
	var parts []string
	for _, w := range d.Windows {
		parts = append(parts, fmt.Sprintf("%s %.1fms", w.label(), w.MedianMs))
	}
	progress("%s: density: ADD %.1fs, DEL %.1fs, %d failed; median %s; held after DEL %d",
		ip.name, d.AddSeconds, d.DelSeconds, d.Failed+d.DelFailed, strings.Join(parts, ", "), held)
	for _, e := range append(slices.Clone(d.Errors), d.DelErrors...) {
		progress("%s: density error: %s", ip.name, e)
	}
	return d, nil
}

// densityProblems lists the density runs' correctness failures.
func densityProblems(ds []*densityResult) []string {
	var out []string
	for _, d := range ds {
		if d.Failed > 0 {
			out = append(out, fmt.Sprintf("%s density ADD: %d of %d failed", d.IPAM, d.Failed, d.Pods))
		}
		if d.DelFailed > 0 {
			out = append(out, fmt.Sprintf("%s density DEL: %d of %d failed", d.IPAM, d.DelFailed, d.Pods))
		}
		if d.HeldAfterAdd != nil && *d.HeldAfterAdd != d.Pods-d.Failed {
			out = append(out, fmt.Sprintf("%s held %d addresses after the density ADDs, expected %d: its leftover count cannot be trusted",
				d.IPAM, *d.HeldAfterAdd, d.Pods-d.Failed))
		}
		if d.Held != nil && *d.Held > 0 {
			out = append(out, fmt.Sprintf("%s still held %d addresses after the density DELs (%s)", d.IPAM, *d.Held, d.HeldDetail))
		}
	}
	return out
}

func growthCell(d *densityResult) string {
	if d.Growth == nil {
		return "n/a"
	}
	return fmt.Sprintf("%.2fx", *d.Growth)
}

func densityHeader(ds []*densityResult) (windows []string, growth string) {
	for _, w := range ds[0].Windows {
		windows = append(windows, w.label()+" ms")
	}
	ws := ds[0].Windows
	growth = "growth"
	if b := ds[0].window(10); b != nil && len(ws) > 0 {
		growth = fmt.Sprintf("%s / %s", strings.TrimPrefix(ws[len(ws)-1].label(), "pods "), strings.TrimPrefix(b.label(), "pods "))
	}
	return windows, growth
}

func heldPtr(p *int) string {
	if p == nil {
		return "-"
	}
	return fmt.Sprint(*p)
}

// printDensity writes the density table; nothing when it did not run.
func printDensity(w io.Writer, ds []*densityResult) {
	if len(ds) == 0 {
		return
	}
	fmt.Fprintf(w, "\ndensity: %d pods ADDed one at a time to one node, median ADD latency around each mark:\n\n", ds[0].Pods)
	windows, growth := densityHeader(ds)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "ipam\t%s\t%s\tADD s\tDEL s\tfailed\theld after DEL\t\n", strings.Join(windows, "\t"), growth)
	for _, d := range ds {
		cells := medianCells(d)
		fmt.Fprintf(tw, "%s\t%s\t%s\t%.1f\t%.1f\t%d\t%s\t\n", d.IPAM, strings.Join(cells, "\t"), growthCell(d),
			d.AddSeconds, d.DelSeconds, d.Failed+d.DelFailed, heldPtr(d.Held))
	}
	tw.Flush()
}

// medianCells are d's window medians in ms, as the tables print them.
func medianCells(d *densityResult) []string {
	cells := make([]string, 0, len(d.Windows))
	for _, win := range d.Windows {
		cells = append(cells, fmt.Sprintf("%.1f", win.MedianMs))
	}
	return cells
}

// markdownDensity renders the same table in markdown.
func markdownDensity(b *strings.Builder, ds []*densityResult) {
	if len(ds) == 0 {
		return
	}
	fmt.Fprintf(b, "\n## Density\n\n%d pods ADDed one at a time to one node (each ADD on a node holding every earlier pod), median ADD latency in ms around each mark:\n\n", ds[0].Pods)
	windows, growth := densityHeader(ds)
	fmt.Fprintf(b, "| ipam | %s | %s | ADD s | DEL s | failed | held after DEL |\n", strings.Join(windows, " | "), growth)
	b.WriteString("|---|" + strings.Repeat("---:|", len(windows)+5) + "\n")
	for _, d := range ds {
		cells := medianCells(d)
		fmt.Fprintf(b, "| %s | %s | %s | %.1f | %.1f | %d | %s |\n", d.IPAM, strings.Join(cells, " | "), growthCell(d),
			d.AddSeconds, d.DelSeconds, d.Failed+d.DelFailed, heldPtr(d.Held))
	}
	for _, d := range ds {
		for _, e := range append(slices.Clone(d.Errors), d.DelErrors...) {
			fmt.Fprintf(b, "\n- %s density: `%s`", d.IPAM, e)
		}
	}
	b.WriteString("\n")
}

// densityRatios are the density targets: the growth of underpool's ADD (issue 11:
// the 1000th pod's ADD costs at most 1.2x the 10th's), and the same growth of the
// others and underpool's latency on the full node against theirs, for reference.
func densityRatios(ds []*densityResult) []ratio {
	find := func(name string) *densityResult {
		for _, d := range ds {
			if d.IPAM == name {
				return d
			}
		}
		return nil
	}
	var out []ratio
	for _, d := range ds {
		if d.Growth == nil {
			continue
		}
		rt := ratio{Name: fmt.Sprintf("%s density: median ADD, last window / 10th pod's", d.IPAM), Target: "(ref)", Value: d.Growth}
		if d.IPAM == ipamUnderpool {
			met := *d.Growth <= 1.2
			rt.Target, rt.Met = "<= 1.2", &met
		} else {
			met := true
			rt.Met = &met
		}
		out = append(out, rt)
	}
	up := find(ipamUnderpool)
	for _, other := range []string{ipamHostLocal, ipamWhereabouts} {
		o := find(other)
		if up == nil || o == nil || len(up.Windows) == 0 {
			continue
		}
		a, b := up.Windows[len(up.Windows)-1], o.Windows[len(o.Windows)-1]
		rt := ratio{Name: fmt.Sprintf("underpool/%s density: median ADD, %s", other, a.label()), Target: "(ref)"}
		if b.MedianMs > 0 {
			v, met := a.MedianMs/b.MedianMs, true
			rt.Value, rt.Met = &v, &met
		}
		out = append(out, rt)
	}
	return out
}
