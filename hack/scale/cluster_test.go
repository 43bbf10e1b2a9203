package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/underpool/underpool/tests/harness"
)

// The --cluster mode at a tiny size: it runs end to end against the real apiserver and
// real ipamds, and its report holds what the README quotes. No timing is asserted.
func TestClusterModeSmoke(t *testing.T) {
	harness.RequireRoot(t)
	o := defaultClusterOptions()
	o.ipamds, o.nodes, o.endpoints, o.pools, o.churn = 2, 5, 50, 2, 10
	o.window, o.gcInterval = 3*time.Second, time.Second
	o.settle, o.probeSettle, o.drain = time.Second, 0, time.Second
	o.reserveMiB, o.out = 0, t.TempDir()
	o.alloc.rate = 0 // TestAllocationChurnPhaseSmoke runs it
	rep, err := runCluster(o)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Ipamds.Started != 2 {
		t.Errorf("%d ipamds started, want 2 (%s)", rep.Ipamds.Started, rep.Ipamds.Limit)
	}
	if rep.Steady.RSSKiBOne <= 0 || rep.Steady.RSSKiBMedian <= 0 || rep.Memory.AllEndpoints.RSSKiB <= 0 {
		t.Errorf("RSS not measured: %+v, %+v", rep.Steady, rep.Memory)
	}
	// the steady window may hold no ipamd request at all (watches only): the start-up
	// lists and watches show that the audit log is read and attributed
	if su := rep.Startup.Requests; su.IpamdTotal <= 0 || su.ByClient[ipamdUserAgent+"*"] <= 0 || su.IpamdByVerbResource["watch endpoints"] <= 0 {
		t.Errorf("no ipamd start-up requests counted from the audit log: %+v", su)
	}
	if rep.Setup.Endpoints != 50 || rep.Churn.Skipped != "" {
		t.Errorf("setup %+v, churn %+v", rep.Setup, rep.Churn)
	}
	text := rep.markdown(o)
	paths, err := rep.write(o.out, text)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range paths {
		if st, err := os.Stat(p); err != nil || st.Size() == 0 {
			t.Errorf("result %s not written: %v", p, err)
		}
	}
	for _, want := range []string{"per ipamd", "Projection to 5000 nodes", ipamdWatchEventsMetric} {
		if !strings.Contains(text, want) {
			t.Errorf("report lacks %q:\n%s", want, text)
		}
	}
}

func TestCountRequestsByClientFromAuditLog(t *testing.T) {
	from := time.Date(2026, 1, 1, 10, 0, 0, 0, time.UTC)
	lines := []string{
		// a watch logs ResponseStarted and ResponseComplete: one request
		`{"auditID":"a","stage":"ResponseStarted","verb":"watch","userAgent":"underpool-ipamd/node-0001 (linux/amd64)","objectRef":{"resource":"endpoints"},"requestReceivedTimestamp":"2026-01-01T10:00:01Z"}`,
		`{"auditID":"a","stage":"ResponseComplete","verb":"watch","userAgent":"underpool-ipamd/node-0001 (linux/amd64)","objectRef":{"resource":"endpoints"},"requestReceivedTimestamp":"2026-01-01T10:00:01Z"}`,
		`{"auditID":"b","stage":"ResponseComplete","verb":"get","userAgent":"underpool-ipamd/node-0002","objectRef":{"resource":"nodes"},"responseStatus":{"code":429},"requestReceivedTimestamp":"2026-01-01T10:00:02Z"}`,
		`{"auditID":"c","stage":"ResponseComplete","verb":"update","userAgent":"underpool-ipamd/node-0002","objectRef":{"resource":"ippools","subresource":"status"},"requestReceivedTimestamp":"2026-01-01T10:00:03Z"}`,
		`{"auditID":"d","stage":"ResponseComplete","verb":"create","userAgent":"underpool-scale/setup","objectRef":{"resource":"endpoints"},"requestReceivedTimestamp":"2026-01-01T10:00:04Z"}`,
		// outside the window
		`{"auditID":"e","stage":"ResponseComplete","verb":"get","userAgent":"underpool-ipamd/node-0001","objectRef":{"resource":"nodes"},"requestReceivedTimestamp":"2026-01-01T09:59:59Z"}`,
		`{"auditID":"f","stage":"ResponseComplete","verb":"get","userAgent":"underpool-ipamd/node-0001","objectRef":{"resource":"nodes"},"requestReceivedTimestamp":"2026-01-01T10:01:00Z"}`,
		`not json`,
	}
	path := filepath.Join(t.TempDir(), "audit.log")
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	rc, err := countRequests(path, 0, from, from.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if rc.IpamdTotal != 3 || rc.IpamdThrottled != 1 || rc.ByClient["underpool-ipamd/*"] != 3 || rc.ByClient["underpool-scale/setup"] != 1 {
		t.Errorf("counts %+v", rc)
	}
	want := map[string]int{"watch endpoints": 1, "get nodes": 1, "update ippools/status": 1}
	for k, v := range want {
		if rc.IpamdByVerbResource[k] != v {
			t.Errorf("%s = %d, want %d (%v)", k, rc.IpamdByVerbResource[k], v, rc.IpamdByVerbResource)
		}
	}
	if rc.PerIpamd["node-0001"] != 1 || rc.PerIpamd["node-0002"] != 2 {
		t.Errorf("per ipamd %v", rc.PerIpamd)
	}
}

func TestMetricByLabel(t *testing.T) {
	text := `# HELP underpool_ipamd_watch_events_total x
# TYPE underpool_ipamd_watch_events_total counter
underpool_ipamd_watch_events_total{resource="endpoints"} 300
underpool_ipamd_watch_events_total{resource="pods"} 2
underpool_ipamd_watch_events_total_other{resource="pods"} 7
apiserver_watch_events_total{group="underpool.io",resource="endpoints",version="v1"} 5
apiserver_watch_events_total{group="",resource="pods",version="v1"} 3
`
	got, ok := metricByLabel(text, ipamdWatchEventsMetric, "resource")
	if !ok || got["endpoints"] != 300 || got["pods"] != 2 || len(got) != 2 {
		t.Errorf("ipamd metric %v %v", got, ok)
	}
	api, ok := apiserverWatchEvents(text)
	if !ok || api["underpool.io/endpoints"] != 5 || api["pods"] != 3 {
		t.Errorf("apiserver metric %v %v", api, ok)
	}
	if _, ok := metricByLabel("go_goroutines 5\n", ipamdWatchEventsMetric, "resource"); ok {
		t.Error("an absent metric was found")
	}
}

func TestProjection(t *testing.T) {
	o := defaultClusterOptions()
	r := &clusterReport{}
	r.Memory.FewEndpoints = memoryPoint{ClusterEndpoints: 10000, RSSKiB: 40 * 1024}
	r.Memory.AllEndpoints = memoryPoint{ClusterEndpoints: 100000, RSSKiB: 130 * 1024}
	r.Steady.RSSKiBMedian = 130 * 1024
	r.Ipamds.Started = 10
	r.Steady.WindowSeconds = 120
	r.Steady.GCRounds = 12
	r.Steady.PerIpamdRequestsPerMinute = 6003
	r.Steady.Requests.IpamdByVerbResource = map[string]int{"get nodes": 10 * 2 * 6000, "update ippools/status": 10 * 2 * 3}
	r.project(o)
	p := r.Projection
	// 1 MiB per 1000 Endpoints; 500,000 Endpoints at 5000 nodes: 130 + 400 MiB
	if p.Endpoints != 500000 || *p.SlopeKiBPer1000Endpoints != 1024 || *p.RSSKiB != 530*1024 {
		t.Errorf("memory projection %+v", p)
	}
	// node GETs 6000/min per ipamd grow 5x, the rest (3/min) stays
	if p.PerIpamdRequestsPerMinute != 30003 || p.NodeScaledPerMinute != 6000 || p.NodeGetsPerIpamdPerGCInterval != 1000 {
		t.Errorf("request projection %+v", p)
	}
	// demand: 999 then 4999 node GETs per 10 s round, 6 rounds a minute, plus the 3/min
	if p.DemandPerIpamdPerMinuteMeasured != 999*6+3 || p.DemandPerIpamdPerMinute != 4999*6+3 || p.DemandClusterQPS != (4999*6+3)*5000/60.0 {
		t.Errorf("demand projection %+v", p)
	}
}
