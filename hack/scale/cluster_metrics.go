package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"k8s.io/client-go/kubernetes"
)

// The counter ipamd keeps of the informer events it receives, by resource. Binaries that
// predate it report "n/a".
const ipamdWatchEventsMetric = "underpool_ipamd_watch_events_total"

// metricByLabel sums the samples of metric by the values of labels, joined by "/" (empty
// values left out: core resources have no group). found is false when the text has no
// sample of metric.
func metricByLabel(text, metric string, labels ...string) (sums map[string]float64, found bool) {
	sums = map[string]float64{}
	for _, s := range metricSamples(text, metric) {
		found = true
		var key []string
		for _, l := range labels {
			if v := labelValue(s.labels, l); v != "" {
				key = append(key, v)
			}
		}
		sums[strings.Join(key, "/")] += s.value
	}
	return sums, found
}

// sample is one line of a metric: its labels as written between the braces, its value.
type sample struct {
	labels string
	value  float64
}

// metricSamples returns every sample of metric in a Prometheus text exposition.
func metricSamples(text, metric string) []sample {
	var out []sample
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		name, rest, have := line, "", ""
		if i := strings.IndexAny(line, "{ "); i >= 0 {
			name, rest = line[:i], line[i:]
		}
		if name != metric {
			continue
		}
		if strings.HasPrefix(rest, "{") {
			end := strings.LastIndex(rest, "}")
			if end < 0 {
				continue
			}
			have, rest = rest[1:end], rest[end+1:]
		}
		fields := strings.Fields(rest)
		if len(fields) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(fields[0], 64)
		if err != nil {
			continue
		}
		out = append(out, sample{labels: have, value: v})
	}
	return out
}

func labelValue(labels, label string) string {
	for _, part := range strings.Split(labels, ",") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(part), label+`="`); ok {
			return strings.TrimSuffix(v, `"`)
		}
	}
	return ""
}

// ipamdMetrics fetches an ipamd's /metrics text.
func ipamdMetrics(ctx context.Context, health string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+health+"/metrics", nil)
	if err != nil {
		return "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("ipamd /metrics: %s", resp.Status)
	}
	body, err := io.ReadAll(resp.Body)
	return string(body), err
}

// apiserverMetrics fetches kube-apiserver's /metrics text (admin client).
func (e *clusterEnv) apiserverMetrics(ctx context.Context) (string, error) {
	cs, err := kubernetes.NewForConfig(e.cp.Config)
	if err != nil {
		return "", err
	}
	raw, err := cs.Discovery().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	return string(raw), err
}

// apiserverWatches is the apiserver's open watches now, by resource
// (apiserver_longrunning_requests{verb="WATCH"}).
func apiserverWatches(text string) (map[string]float64, bool) {
	out := map[string]float64{}
	found := false
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "apiserver_longrunning_requests{") || !strings.Contains(line, `verb="WATCH"`) {
			continue
		}
		one, ok := metricByLabel(line, "apiserver_longrunning_requests", "group", "resource")
		if !ok {
			continue
		}
		found = true
		for k, v := range one {
			out[k] += v
		}
	}
	return out, found
}

// apiserverWatchEvents is apiserver_watch_events_total (events sent to all watchers) by
// the resource (or kind, in versions that label it so).
func apiserverWatchEvents(text string) (map[string]float64, bool) {
	if m, ok := metricByLabel(text, "apiserver_watch_events_total", "group", "resource"); ok && m[""] == 0 {
		return m, true
	}
	return metricByLabel(text, "apiserver_watch_events_total", "group", "kind")
}

func delta(after, before map[string]float64) map[string]float64 {
	out := map[string]float64{}
	for k, v := range after {
		if d := v - before[k]; d != 0 {
			out[k] = d
		}
	}
	return out
}

func sum(m map[string]float64) float64 {
	t := 0.0
	for _, v := range m {
		t += v
	}
	return t
}
