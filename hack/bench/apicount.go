package main

import (
	"bufio"
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// apiCounter reads the apiserver's own count of the requests it served
// (apiserver_request_total), so each contestant's API cost per pod is measured by
// the server rather than guessed from the client's code.
type apiCounter struct {
	cs *kubernetes.Clientset
}

func newAPICounter(cfg *rest.Config) (*apiCounter, error) {
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	return &apiCounter{cs: cs}, nil
}

// snapshot maps "VERB resource" (subresource after a slash) to the requests served so far.
func (a *apiCounter) snapshot(ctx context.Context) (map[string]float64, error) {
	raw, err := a.cs.RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading the apiserver's metrics: %w", err)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(strings.NewReader(string(raw)))
	sc.Buffer(make([]byte, 1024*1024), 16*1024*1024)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "apiserver_request_total{") {
			continue
		}
		end := strings.LastIndexByte(line, '}')
		v, err := strconv.ParseFloat(strings.TrimSpace(line[end+1:]), 64)
		if err != nil {
			continue
		}
		labels := parseLabels(line[len("apiserver_request_total{"):end])
		key := labels["verb"] + " " + labels["resource"]
		if sub := labels["subresource"]; sub != "" {
			key += "/" + sub
		}
		out[key] += v
	}
	return out, sc.Err()
}

// parseLabels reads a Prometheus label set: k="v",k2="v2" (values here hold no quotes).
func parseLabels(s string) map[string]string {
	out := map[string]string{}
	for _, kv := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(kv, "=")
		if ok {
			out[k] = strings.Trim(v, `"`)
		}
	}
	return out
}

// perPod renders the requests served between two snapshots divided by pods, the
// most frequent first, e.g. "POST endpoints 1.00, PUT ippools/status 0.12". The bench
// sends nothing itself while a phase runs: everything counted is the contestant's.
func perPod(before, after map[string]float64, pods int) (string, float64) {
	diff := map[string]float64{}
	for k, v := range after {
		if d := v - before[k]; d > 0 {
			diff[k] = d
		}
	}
	keys := slices.Collect(maps.Keys(diff))
	slices.SortFunc(keys, func(a, b string) int {
		if diff[a] != diff[b] {
			if diff[a] > diff[b] {
				return -1
			}
			return 1
		}
		return strings.Compare(a, b)
	})
	var parts []string
	total := 0.0
	for _, k := range keys {
		total += diff[k]
		parts = append(parts, fmt.Sprintf("%s %.2f", k, diff[k]/float64(pods)))
	}
	return strings.Join(parts, ", "), total / float64(pods)
}
