package deploy

import (
	"encoding/json"
	"os"
	"reflect"
	"testing"

	"github.com/underpool/underpool/tests/harness"
)

// With monitoring on, and the Prometheus Operator's API served, the chart renders the
// PrometheusRule of deploy/monitoring unchanged, a PodMonitor for the controller's metrics
// port and the dashboard ConfigMap; without the operator's API only the ConfigMap.
func TestChartRendersMonitoring(t *testing.T) {
	var wantRule map[string]any
	readYAML(t, repo("deploy", "monitoring", "prometheusrule.yaml"), &wantRule)
	dashboard, err := os.ReadFile(repo("deploy", "monitoring", "grafana-dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		operator bool
	}{{"with the operator", true}, {"without the operator", false}} {
		t.Run(tc.name, func(t *testing.T) {
			args := []string{"--namespace", namespace, "-f", "testdata/values-all.yaml"}
			if tc.operator {
				args = append(args, "--api-versions", "monitoring.coreos.com/v1")
			}
			objs, _, err := harness.RenderChart(chartDir(), args...)
			if err != nil {
				t.Fatal(err)
			}
			found := map[string]bool{}
			for _, o := range objs {
				switch o.GetKind() {
				case "PrometheusRule":
					found["rule"] = true
					if !reflect.DeepEqual(o.Object["spec"], wantRule["spec"]) {
						t.Errorf("the chart's PrometheusRule spec differs from deploy/monitoring/prometheusrule.yaml")
					}
					if o.GetLabels()["release"] != "kube-prometheus-stack" {
						t.Errorf("PrometheusRule labels %v lack monitoring.prometheusRule.labels", o.GetLabels())
					}
				case "PodMonitor":
					found["podmonitor"] = true
					eps, _ := o.Object["spec"].(map[string]any)["podMetricsEndpoints"].([]any)
					if len(eps) != 1 || eps[0].(map[string]any)["port"] != "metrics" {
						t.Errorf("PodMonitor endpoints %v, want the controller's metrics port", eps)
					}
				case "ConfigMap":
					if o.GetName() != "underpool-grafana-dashboard" {
						continue
					}
					found["dashboard"] = true
					data, _ := o.Object["data"].(map[string]any)["underpool.json"].(string)
					var got, want any
					if json.Unmarshal([]byte(data), &got) != nil || json.Unmarshal(dashboard, &want) != nil || !reflect.DeepEqual(got, want) {
						t.Errorf("the dashboard ConfigMap does not carry deploy/monitoring/grafana-dashboard.json")
					}
				}
			}
			if want := map[string]bool{"rule": tc.operator, "podmonitor": tc.operator, "dashboard": true}; !reflect.DeepEqual(found, trim(want)) {
				t.Errorf("rendered %v, want %v", found, trim(want))
			}
		})
	}
}

func trim(m map[string]bool) map[string]bool {
	out := map[string]bool{}
	for k, v := range m {
		if v {
			out[k] = true
		}
	}
	return out
}
