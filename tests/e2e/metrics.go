package e2e

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/underpool/underpool/tests/harness"
)

// Nodes with an ipamd of their own, and reading what they and the controller serve on /metrics.

// NodeWithIpamd makes a Node object and starts its ipamd with /metrics on a loopback
// address, which it returns; both go when the test ends.
func NodeWithIpamd(t *testing.T, node string, ipamdArgs ...string) (*harness.Ipamd, string) {
	t.Helper()
	if err := Suite.Client.Create(Ctx(t), &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: node}}); err != nil {
		t.Fatal(err)
	}
	health, err := harness.FreeLoopbackAddress()
	if err != nil {
		t.Fatal(err)
	}
	o := harness.DefaultIpamdOptions(Suite.Bin, Suite.CP.KubeconfigPath, node, Suite.Dir)
	o.HealthAddress = health
	o.ExtraArgs = append([]string{"--commit-window=" + CommitWindow}, ipamdArgs...)
	d, err := harness.StartIpamd(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = d.Stop()
		_ = Suite.Client.Delete(context.Background(), &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: node}})
	})
	return d, health
}

// sample is one line of the text exposition format.
type sample struct {
	name   string
	labels map[string]string
	value  float64
}

// Metrics is what one scrape of /metrics read.
type Metrics []sample

// Scrape reads /metrics at addr. The exposition format is parsed by hand: our label
// values carry no commas, quotes or escapes.
func Scrape(t *testing.T, addr string) Metrics {
	t.Helper()
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(c, http.MethodGet, "http://"+addr+"/metrics", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("scraping %s: %v", addr, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(resp.Body)
		t.Fatalf("scraping %s: %s: %s", addr, resp.Status, body)
	}
	var set Metrics
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("scraping %s: bad line %q", addr, line)
		}
		s := sample{name: line[:i], labels: map[string]string{}, value: v}
		if open := strings.IndexByte(s.name, '{'); open >= 0 {
			for _, kv := range strings.Split(strings.TrimSuffix(s.name[open+1:], "}"), ",") {
				if k, val, ok := strings.Cut(kv, "="); ok {
					s.labels[k] = strings.Trim(val, `"`)
				}
			}
			s.name = s.name[:open]
		}
		set = append(set, s)
	}
	return set
}

// Get returns the value of the series with name and these label pairs (others ignored).
func (m Metrics) Get(name string, labels ...string) (float64, bool) {
	for _, s := range m {
		if s.name != name {
			continue
		}
		match := true
		for i := 0; i+1 < len(labels); i += 2 {
			if s.labels[labels[i]] != labels[i+1] {
				match = false
			}
		}
		if match {
			return s.value, true
		}
	}
	return 0, false
}

func (m Metrics) names(prefix string) []string {
	seen := map[string]bool{}
	for _, s := range m {
		if strings.HasPrefix(s.name, prefix) {
			seen[s.name] = true
		}
	}
	out := make([]string, 0, len(seen))
	for n := range seen {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// AtLeast fails the test unless the series exists with a value of at least min.
func (m Metrics) AtLeast(t *testing.T, min float64, name string, labels ...string) {
	t.Helper()
	v, ok := m.Get(name, labels...)
	if !ok {
		t.Errorf("%s%v is missing; underpool series: %v", name, labels, m.names("underpool_"))
	} else if v < min {
		t.Errorf("%s%v = %v, want at least %v", name, labels, v, min)
	}
}

// Equal fails the test unless the series exists with the value want.
func (m Metrics) Equal(t *testing.T, want float64, name string, labels ...string) {
	t.Helper()
	v, ok := m.Get(name, labels...)
	if !ok {
		t.Errorf("%s%v is missing; underpool series: %v", name, labels, m.names("underpool_"))
	} else if v != want {
		t.Errorf("%s%v = %v, want %v", name, labels, v, want)
	}
}
