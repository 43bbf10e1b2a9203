package store

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

func lagSamples(t *testing.T, m *Metrics) (uint64, float64) {
	t.Helper()
	var out dto.Metric
	if err := m.InformerLag.(prometheus.Metric).Write(&out); err != nil {
		t.Fatal(err)
	}
	return out.GetHistogram().GetSampleCount(), out.GetHistogram().GetSampleSum()
}

// A write's informer delivery is timed whichever comes first: the delivery after the
// write returned (the lag), or the delivery before it (no lag). A delivery of someone
// else's write times nothing.
func TestInformerLagTimesEveryOwnWrite(t *testing.T) {
	m := NewMetrics(nil)
	at := time.Now()
	m.wrote("p", "10", at)
	m.seen("p", "10", at.Add(30*time.Millisecond))
	if n, sum := lagSamples(t, m); n != 1 || sum < 0.029 || sum > 0.031 {
		t.Fatalf("delivery after the write: %d samples, sum %v; want 1 of 30 ms", n, sum)
	}
	m.seen("p", "11", at) // the informer is ahead of the write's answer
	m.wrote("p", "11", at.Add(time.Millisecond))
	if n, _ := lagSamples(t, m); n != 2 {
		t.Fatalf("delivery before the write returned: %d samples, want 2", n)
	}
	m.seen("p", "12", at) // the controller's write
	m.wrote("p", "13", at)
	if n, _ := lagSamples(t, m); n != 2 {
		t.Fatalf("someone else's write was timed: %d samples, want 2", n)
	}
}
