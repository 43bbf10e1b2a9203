package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// memoryPoint is one fresh ipamd on node-0, read 5 s after ready.
type memoryPoint struct {
	ClusterEndpoints int     `json:"clusterEndpoints"`
	RSSKiB           int     `json:"rssKiB"`
	PeakKiB          int     `json:"peakKiB"`
	ReadySeconds     float64 `json:"readySeconds"`
}

type clusterReport struct {
	Options  map[string]any `json:"options"`
	Started  time.Time      `json:"started"`
	Finished time.Time      `json:"finished"`
	Setup    struct {
		Nodes, Pods, Endpoints int
		Seconds                float64
		EndpointsPerSecond     float64
	} `json:"setup"`
	Memory struct {
		// FewEndpoints: only the ipamd nodes' Endpoints existed; AllEndpoints: all of them.
		FewEndpoints memoryPoint `json:"fewEndpoints"`
		AllEndpoints memoryPoint `json:"allEndpoints"`
	} `json:"memory"`
	Ipamds struct {
		Requested, Started int
		Limit              string    `json:",omitempty"`
		PeakKiBFirst       int       `json:"peakKiBFirst"`
		ReadySeconds       []float64 `json:"readySeconds"`
	} `json:"ipamds"`
	// Startup is what the ipamds asked while they started (lists and watches of their
	// informers, the node's reconcile): the part of their load that is paid once.
	Startup struct {
		Seconds  float64
		Requests requestCounts
	} `json:"startup"`
	Steady struct {
		WindowSeconds                      float64
		RSSKiBOne, RSSKiBMedian, RSSKiBMax int
		RSSKiB                             []int
		Requests                           requestCounts
		IpamdRequestsPerMinute             float64
		PerIpamdRequestsPerMinute          float64
		GCRounds                           float64
		APIServerWatches                   map[string]float64 `json:",omitempty"`
		APIServerWatchesKnown              bool
		// APIServerCPUPerSecond is kube-apiserver's CPU seconds per second in the window.
		APIServerCPUPerSecond float64
	} `json:"steady"`
	Churn struct {
		Pods    int
		Skipped string `json:",omitempty"`
		Seconds float64
		// IpamdWatchEvents is node-0's ipamd's underpool_ipamd_watch_events_total delta by
		// resource; nil when its binary has no such metric.
		IpamdWatchEvents      map[string]float64 `json:",omitempty"`
		IpamdWatchEventsTotal *float64           `json:",omitempty"`
		APIServerWatchEvents  map[string]float64 `json:",omitempty"`
	} `json:"churn"`
	Projection projection `json:"projection"`
	// Alloc is the allocation churn on one shared, fragmented pool (issue 20).
	Alloc allocReport `json:"alloc"`
}

// projection carries the measured figures to o.projectNodes nodes with the same Endpoints
// per node. Memory: a line through the two fresh-ipamd points (RSS against the cluster's
// Endpoints), its slope added to the steady median for the extra Endpoints. Requests: the
// per-ipamd rate of each verb+resource; those whose count per round follows the Node
// count (GETs of nodes: recycling asks for every other node holding Endpoints) scale by
// nodes/measured nodes, the rest stay as measured. Cluster-wide: per ipamd x nodes.
// A saturated apiserver slows the rounds, so the node GETs measured per GC interval can
// fall short of the demand (one per other node per round); Demand* say what the rounds
// would ask at their interval, the rest as measured.
type projection struct {
	Nodes                         int      `json:"nodes"`
	Endpoints                     int      `json:"endpoints"`
	SlopeKiBPer1000Endpoints      *float64 `json:"slopeKiBPer1000Endpoints,omitempty"`
	RSSKiB                        *float64 `json:"rssKiB,omitempty"`
	PerIpamdRequestsPerMinute     float64  `json:"perIpamdRequestsPerMinute"`
	NodeScaledPerMinute           float64  `json:"nodeScaledPerMinute"` // the part that grows with nodes, measured
	ClusterQPS                    float64  `json:"clusterQPS"`
	NodeGetsPerIpamdPerGCInterval float64  `json:"nodeGetsPerIpamdPerGCInterval"`
	// DemandPerIpamdPerMinute{Measured,} and DemandClusterQPS{Measured,}: node GETs at one
	// per other node per GC interval, plus the other requests as measured.
	DemandPerIpamdPerMinuteMeasured float64 `json:"demandPerIpamdPerMinuteMeasured"`
	DemandPerIpamdPerMinute         float64 `json:"demandPerIpamdPerMinute"`
	DemandClusterQPSMeasured        float64 `json:"demandClusterQPSMeasured"`
	DemandClusterQPS                float64 `json:"demandClusterQPS"`
}

// nodeScaled says whether a verb+resource's count per ipamd follows the cluster's node count.
func nodeScaled(key string) bool { return key == "get nodes" }

func (r *clusterReport) project(o clusterOptions) {
	p := &r.Projection
	p.Nodes = o.projectNodes
	p.Endpoints = int(float64(o.endpoints) / float64(o.nodes) * float64(o.projectNodes))
	few, all := r.Memory.FewEndpoints, r.Memory.AllEndpoints
	if all.ClusterEndpoints-few.ClusterEndpoints >= minFitEndpoints {
		slope := float64(all.RSSKiB-few.RSSKiB) / float64(all.ClusterEndpoints-few.ClusterEndpoints)
		per1000 := slope * 1000
		rss := float64(r.Steady.RSSKiBMedian) + slope*float64(p.Endpoints-o.endpoints)
		p.SlopeKiBPer1000Endpoints, p.RSSKiB = &per1000, &rss
	}
	n := float64(r.Ipamds.Started)
	minutes := r.Steady.WindowSeconds / 60
	if n == 0 || minutes == 0 {
		return
	}
	for key, count := range r.Steady.Requests.IpamdByVerbResource {
		perMin := float64(count) / minutes / n
		if nodeScaled(key) {
			p.NodeScaledPerMinute += perMin
			perMin *= float64(o.projectNodes) / float64(o.nodes)
			if r.Steady.GCRounds > 0 {
				p.NodeGetsPerIpamdPerGCInterval = float64(count) / n / r.Steady.GCRounds
			}
		}
		p.PerIpamdRequestsPerMinute += perMin
	}
	p.ClusterQPS = p.PerIpamdRequestsPerMinute * float64(o.projectNodes) / 60
	rounds := time.Minute.Seconds() / o.gcInterval.Seconds()
	other := r.Steady.PerIpamdRequestsPerMinute - p.NodeScaledPerMinute
	// the demand of an ipamd that GETs every other node each round; one that asks for
	// no nodes (ipamd since issue 11) demands what it was measured asking
	nodeGets := func(nodes int) float64 {
		if p.NodeScaledPerMinute == 0 {
			return 0
		}
		return float64(nodes-1) * rounds
	}
	p.DemandPerIpamdPerMinuteMeasured = nodeGets(o.nodes) + other
	p.DemandPerIpamdPerMinute = nodeGets(o.projectNodes) + other
	p.DemandClusterQPSMeasured = p.DemandPerIpamdPerMinuteMeasured * float64(o.nodes) / 60
	p.DemandClusterQPS = p.DemandPerIpamdPerMinute * float64(o.projectNodes) / 60
}

func (o clusterOptions) forReport() map[string]any {
	return map[string]any{"ipamds": o.ipamds, "nodes": o.nodes, "endpoints": o.endpoints, "pools": o.pools,
		"churn": o.churn, "window": o.window.String(), "gcInterval": o.gcInterval.String(), "batch": o.batch,
		"reserveMiB": o.reserveMiB, "projectNodes": o.projectNodes, "allocRate": o.alloc.rate, "allocWindow": o.alloc.window.String(),
		"allocIpamds": o.alloc.ipamds, "allocInflight": o.alloc.inflight, "allocPoolSize": o.alloc.poolSize}
}

func mib(k int) string { return fmt.Sprintf("%.1f MiB", kib(k)) }

// markdown renders the report for people (and the README).
func (r *clusterReport) markdown(o clusterOptions) string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	w("# underpool simulated cluster %s\n", r.Started.Format(time.RFC3339))
	w("%d Nodes, %d Endpoints (one interface, one IPv4 each) in %d pools, %d of %d ipamds running (one per node, node-0 up), "+
		"recycling every %s, steady window %.0f s.", o.nodes, r.Setup.Endpoints, o.pools, r.Ipamds.Started, r.Ipamds.Requested,
		o.gcInterval, r.Steady.WindowSeconds)
	if r.Ipamds.Limit != "" {
		w("Fewer ipamds than asked: %s.", r.Ipamds.Limit)
	}
	w("Setup (not measured against anything): %d Endpoints at %.0f/s; pods exist only for the %d Endpoints on nodes that may run an ipamd.\n",
		r.Setup.Endpoints, r.Setup.EndpointsPerSecond, r.Setup.Pods)

	w("## ipamd memory (VmRSS)\n")
	w("| measure | value |")
	w("|---|---:|")
	w("| one ipamd (node-0), end of the steady window | %s |", mib(r.Steady.RSSKiBOne))
	w("| median / max of the %d ipamds | %s / %s |", len(r.Steady.RSSKiB), mib(r.Steady.RSSKiBMedian), mib(r.Steady.RSSKiBMax))
	w("| fresh ipamd, %d Endpoints in the cluster (%.0f s to ready, read 5 s later) | %s |", r.Memory.FewEndpoints.ClusterEndpoints,
		r.Memory.FewEndpoints.ReadySeconds, mib(r.Memory.FewEndpoints.RSSKiB))
	w("| fresh ipamd, %d Endpoints in the cluster (%.0f s to ready, read 5 s later) | %s |", r.Memory.AllEndpoints.ClusterEndpoints,
		r.Memory.AllEndpoints.ReadySeconds, mib(r.Memory.AllEndpoints.RSSKiB))
	w("| peak (VmHWM) of the first ipamd, started alone | %s |", mib(r.Ipamds.PeakKiBFirst))
	w("| start to ready, median of the %d ipamds (started %d at a time) | %.1f s |\n", len(r.Ipamds.ReadySeconds), o.batch, median(r.Ipamds.ReadySeconds))

	n := float64(max(r.Ipamds.Started, 1))
	su := r.Startup.Requests
	w("## API requests while the ipamds started (%.0f s)\n", r.Startup.Seconds)
	w("Paid once per ipamd start: the list and watch of each informer, the node's reconcile. %d requests from the ipamds, **%.1f per ipamd**.\n",
		su.IpamdTotal, float64(su.IpamdTotal)/n)
	w("| ipamd verb resource | requests per ipamd |")
	w("|---|---:|")
	for _, k := range sortedKeys(su.IpamdByVerbResource) {
		w("| %s | %.1f |", k, float64(su.IpamdByVerbResource[k])/n)
	}
	w("")

	rq := r.Steady.Requests
	minutes := r.Steady.WindowSeconds / 60
	w("## API requests in the steady window\n")
	w("By client, from the apiserver's audit log (`userAgent` of each request: `apiserver_request_total` has no user-agent label).\n")
	w("| client (user agent) | requests | per minute |")
	w("|---|---:|---:|")
	for _, k := range sortedKeys(rq.ByClient) {
		w("| %s | %d | %.0f |", k, rq.ByClient[k], float64(rq.ByClient[k])/minutes)
	}
	w("")
	w("ipamds: %.0f requests/min in total, **%.1f per ipamd per minute**; %d answered 429 (throttled by the apiserver).\n",
		r.Steady.IpamdRequestsPerMinute, r.Steady.PerIpamdRequestsPerMinute, rq.IpamdThrottled)
	w("| ipamd verb resource | requests | per ipamd per minute |")
	w("|---|---:|---:|")
	for _, k := range sortedKeys(rq.IpamdByVerbResource) {
		w("| %s | %d | %.1f |", k, rq.IpamdByVerbResource[k], float64(rq.IpamdByVerbResource[k])/minutes/n)
	}
	w("")
	if r.Steady.APIServerWatchesKnown {
		w("Open watches at the apiserver (`apiserver_longrunning_requests{verb=\"WATCH\"}`): %.0f in all, %s.\n",
			sum(r.Steady.APIServerWatches), topCounts(r.Steady.APIServerWatches, 6))
	}

	w("## Churn on nodes without an ipamd\n")
	c := r.Churn
	if c.Skipped != "" {
		w("Skipped: %s.\n", c.Skipped)
	} else {
		w("%d pods with their Endpoints created, then released and deleted (Endpoint create, update, delete; pod create, delete), in %.1f s.\n", c.Pods, c.Seconds)
		w("| measure | value |")
		w("|---|---:|")
		if c.IpamdWatchEventsTotal == nil {
			w("| watch events node-0's ipamd received (`%s`) | n/a (not in this ipamd) |", ipamdWatchEventsMetric)
		} else {
			w("| watch events node-0's ipamd received (`%s`) | %.0f (%s) |", ipamdWatchEventsMetric, *c.IpamdWatchEventsTotal, topCounts(c.IpamdWatchEvents, 8))
		}
		if c.APIServerWatchEvents != nil {
			w("| watch events the apiserver sent to all watchers (`apiserver_watch_events_total`) | %.0f (%s) |", sum(c.APIServerWatchEvents), topCounts(c.APIServerWatchEvents, 8))
		}
		if eps, ok := c.APIServerWatchEvents["underpool.io/endpoints"]; ok {
			w("| of those, Endpoint events per ipamd (only ipamds watch Endpoints here) | %.0f |", eps/n)
		}
		w("")
	}

	p := r.Projection
	w("## Projection to %d nodes (%d Endpoints, same per node)\n", p.Nodes, p.Endpoints)
	w("Arithmetic on the figures above, not a run. Memory: a line through the two fresh-ipamd points (RSS against the cluster's " +
		"Endpoints); its slope times the extra Endpoints is added to the steady median. Requests: each ipamd verb+resource rate " +
		"as measured, except GETs of nodes (recycling GETs every other node that holds Endpoints, each round), scaled by the node count; " +
		"cluster-wide = per ipamd x nodes.\n")
	w("| measure | measured (%d nodes) | projected (%d nodes) |", o.nodes, p.Nodes)
	w("|---|---:|---:|")
	if p.RSSKiB != nil {
		w("| ipamd RSS (slope %.0f KiB per 1000 cluster Endpoints) | %s | %s |", *p.SlopeKiBPer1000Endpoints, mib(r.Steady.RSSKiBMedian), mib(int(*p.RSSKiB)))
	} else {
		w("| ipamd RSS | %s | n/a (the two memory points differ by fewer than %d Endpoints) |", mib(r.Steady.RSSKiBMedian), minFitEndpoints)
	}
	w("| requests per ipamd per minute (of which node GETs) | %.1f (%.1f) | %.1f |", r.Steady.PerIpamdRequestsPerMinute, p.NodeScaledPerMinute, p.PerIpamdRequestsPerMinute)
	w("| all ipamds, requests per second (per ipamd x nodes) | %.0f | %.0f |", r.Steady.PerIpamdRequestsPerMinute/60*float64(o.nodes), p.ClusterQPS)
	w("| node GETs per ipamd per GC interval (%s); demand: one per other node | %.1f of %d | of %d |", o.gcInterval, p.NodeGetsPerIpamdPerGCInterval, o.nodes-1, p.Nodes-1)
	w("| demand: requests per ipamd per minute, node GETs at the demand | %.0f | %.0f |", p.DemandPerIpamdPerMinuteMeasured, p.DemandPerIpamdPerMinute)
	w("| demand: all ipamds, requests per second | %.0f | %.0f |", p.DemandClusterQPSMeasured, p.DemandClusterQPS)
	w("")
	w("Only %d ipamds ran: cluster-wide figures multiply the per-ipamd rate by the node count. When the node GETs per GC interval "+
		"fall short of the demand, the apiserver could not keep up and the rounds ran longer than their interval: the \"demand\" rows "+
		"say what the rounds ask for at their interval (the production default, 1m, asks %.0fx less of the node GETs).\n", r.Ipamds.Started, time.Minute.Seconds()/o.gcInterval.Seconds())
	b.WriteString(r.Alloc.markdown(o))
	return b.String()
}

func topCounts(m map[string]float64, n int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return m[keys[i]] > m[keys[j]] || (m[keys[i]] == m[keys[j]] && keys[i] < keys[j]) })
	var parts []string
	for i, k := range keys {
		if i == n {
			parts = append(parts, "...")
			break
		}
		name := k
		if name == "" {
			name = "(none)"
		}
		parts = append(parts, fmt.Sprintf("%s %.0f", name, m[k]))
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	return s[len(s)/2]
}

// write puts the report's JSON and markdown under dir.
func (r *clusterReport) write(dir, text string) ([]string, error) {
	return writeReport(dir, "scale-cluster-"+r.Started.Format("20060102-150405"), r, text)
}

// writeReport puts a report as JSON and its markdown text under dir, named base.json and
// base.md, as hack/bench does.
func writeReport(dir, base string, r any, text string) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	path := filepath.Join(dir, base)
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(path+".json", data, 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(path+".md", []byte(text), 0o644); err != nil {
		return nil, err
	}
	return []string{path + ".json", path + ".md"}, nil
}
