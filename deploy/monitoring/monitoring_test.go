// Package monitoring holds the Grafana dashboard and the PrometheusRule; this test proves
// every metric they name is one the code registers, with the labels they use.
package monitoring

import (
	"encoding/json"
	"os"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/yaml"

	"github.com/underpool/underpool/controller"
	"github.com/underpool/underpool/controller/webhook"
	"github.com/underpool/underpool/ipamd/rdmastats"
	"github.com/underpool/underpool/ipamd/service"
	"github.com/underpool/underpool/ipamd/store"
)

// registered maps every metric name the code registers to its label names, read from
// the collectors' descriptors (a vector with no series yet is still described).
func registered(t *testing.T) map[string]map[string]bool {
	rec := &recorder{names: map[string]map[string]bool{}}
	service.NewMetrics(rec)
	store.NewMetrics(rec)
	rec.MustRegister((&service.Service{}).ReadyGauge())
	controller.NewMetrics(rec, nil)
	webhook.NewMetrics(rec)
	rec.MustRegister(rdmastats.NewCollector(rdmastats.Sysfs{}))
	if len(rec.names) < 30 {
		t.Fatalf("only %d metrics registered: the recorder missed some", len(rec.names))
	}
	return rec.names
}

type recorder struct{ names map[string]map[string]bool }

var descRE = regexp.MustCompile(`fqName: "([^"]+)".*variableLabels: \{([^}]*)\}`)

func (r *recorder) Register(c prometheus.Collector) error {
	ch := make(chan *prometheus.Desc, 64)
	go func() { c.Describe(ch); close(ch) }()
	for d := range ch {
		m := descRE.FindStringSubmatch(d.String())
		if m == nil {
			panic("cannot read descriptor " + d.String())
		}
		labels := map[string]bool{}
		for _, l := range strings.Split(m[2], ",") {
			if l = strings.TrimSpace(l); l != "" {
				labels[l] = true
			}
		}
		r.names[m[1]] = labels
	}
	return nil
}

func (r *recorder) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		_ = r.Register(c)
	}
}

func (r *recorder) Unregister(prometheus.Collector) bool { return false }

var (
	metricRE   = regexp.MustCompile(`\b(underpool_[a-z0-9_]+)(\{[^}]*\})?`)
	matcherRE  = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)`)
	groupingRE = regexp.MustCompile(`\b(?:by|without)\s*\(([^)]*)\)`)
)

// check reports names the code does not register and label matchers or groupings it
// does not give the metrics the expression uses. Histograms are named by their series.
func check(t *testing.T, where, expr string, known map[string]map[string]bool) []string {
	t.Helper()
	var used []string
	labelsOf := map[string]bool{"instance": true, "job": true, "le": true} // added by Prometheus, or histogram buckets
	for _, m := range metricRE.FindAllStringSubmatch(expr, -1) {
		name := m[1]
		base := name
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			if _, ok := known[name]; !ok && strings.HasSuffix(name, suffix) {
				base = strings.TrimSuffix(name, suffix)
			}
		}
		labels, ok := known[base]
		if !ok {
			t.Errorf("%s: %s is not a metric the code registers (expr %q)", where, name, expr)
			continue
		}
		used = append(used, base)
		for l := range labels {
			labelsOf[l] = true
		}
		for _, mm := range matcherRE.FindAllStringSubmatch(m[2], -1) {
			if !labels[mm[1]] {
				t.Errorf("%s: %s has no label %q (it has %v)", where, base, mm[1], labels)
			}
		}
	}
	for _, g := range groupingRE.FindAllStringSubmatch(expr, -1) {
		for _, l := range strings.Split(g[1], ",") {
			if l = strings.TrimSpace(l); l != "" && !labelsOf[l] {
				t.Errorf("%s: groups by %q, which none of its metrics has (expr %q)", where, l, expr)
			}
		}
	}
	return used
}

type rule struct {
	Alert       string            `json:"alert"`
	Expr        string            `json:"expr"`
	For         string            `json:"for"`
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
}

// The PrometheusRule has the alerts issue 12 asks for, each well formed, each naming
// only metrics and labels the code registers.
func TestPrometheusRuleNamesRegisteredMetrics(t *testing.T) {
	known := registered(t)
	raw, err := os.ReadFile("prometheusrule.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var pr struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		Metadata   struct {
			Name      string            `json:"name"`
			Namespace string            `json:"namespace"`
			Labels    map[string]string `json:"labels"`
		} `json:"metadata"`
		Spec struct {
			Groups []struct {
				Name  string `json:"name"`
				Rules []rule `json:"rules"`
			} `json:"groups"`
		} `json:"spec"`
	}
	if err := yaml.UnmarshalStrict(raw, &pr); err != nil {
		t.Fatalf("prometheusrule.yaml: %v", err)
	}
	if pr.APIVersion != "monitoring.coreos.com/v1" || pr.Kind != "PrometheusRule" {
		t.Fatalf("prometheusrule.yaml is %s %s", pr.APIVersion, pr.Kind)
	}
	alerts := map[string]string{}
	for _, g := range pr.Spec.Groups {
		for _, r := range g.Rules {
			where := "alert " + r.Alert
			if r.Alert == "" || r.Expr == "" || r.Labels["severity"] == "" || r.Annotations["summary"] == "" {
				t.Errorf("%s: needs alert, expr, labels.severity and annotations.summary: %+v", where, r)
			}
			if len(check(t, where, r.Expr, known)) == 0 {
				t.Errorf("%s names no underpool metric", where)
			}
			alerts[r.Alert] = r.Expr
		}
	}
	for _, want := range []struct{ alert, metric string }{
		{"UnderpoolPoolAlmostFull", "underpool_ippool_allocated_addresses"},
		{"UnderpoolAllocationFailures", "underpool_ipamd_allocation_failures_total"},
		{"UnderpoolAddressConflictOnWire", "underpool_ippool_quarantined_addresses"},
		{"UnderpoolPoolsOverlap", "underpool_pools_overlapping"},
		{"UnderpoolOrphansFreed", "underpool_orphans_freed_total"},
		{"UnderpoolIpamdNotReady", "underpool_ipamd_ready"},
	} {
		if !strings.Contains(alerts[want.alert], want.metric) {
			t.Errorf("alert %s missing or not on %s: %q", want.alert, want.metric, alerts[want.alert])
		}
	}
	if !strings.Contains(alerts["UnderpoolPoolAlmostFull"], "0.9") {
		t.Errorf("UnderpoolPoolAlmostFull is not at 90%%: %q", alerts["UnderpoolPoolAlmostFull"])
	}
}

// The dashboard parses as Grafana JSON and every panel query names registered metrics;
// between them the panels show every metric the code registers.
func TestDashboardNamesRegisteredMetrics(t *testing.T) {
	known := registered(t)
	raw, err := os.ReadFile("grafana-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		UID    string `json:"uid"`
		Title  string `json:"title"`
		Panels []struct {
			Type    string `json:"type"`
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
		Templating struct {
			List []struct {
				Name       string `json:"name"`
				Definition string `json:"definition"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("grafana-dashboard.json: %v", err)
	}
	if dash.UID == "" || dash.Title == "" || len(dash.Panels) == 0 {
		t.Fatalf("grafana-dashboard.json: no uid, title or panels")
	}
	shown := map[string]bool{}
	for _, p := range dash.Panels {
		if p.Type == "row" {
			continue
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			for _, n := range check(t, "panel "+p.Title, tg.Expr, known) {
				shown[n] = true
			}
		}
	}
	for _, v := range dash.Templating.List {
		check(t, "variable "+v.Name, v.Definition, known)
	}
	var missing []string
	for n := range known {
		if !shown[n] {
			missing = append(missing, n)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("registered metrics no panel shows: %v", missing)
	}
}
