package main

import (
	"testing"
	"time"
)

func TestDensityWindows(t *testing.T) {
	for _, tc := range []struct {
		n    int
		want [][3]int // mark, from, to
	}{
		{1000, [][3]int{{1, 1, 1}, {10, 2, 20}, {110, 101, 120}, {250, 241, 260}, {1000, 991, 1000}}},
		{120, [][3]int{{1, 1, 1}, {10, 2, 20}, {110, 101, 120}, {120, 111, 120}}},
		{250, [][3]int{{1, 1, 1}, {10, 2, 20}, {110, 101, 120}, {250, 241, 250}}},
		{5, [][3]int{{1, 1, 1}, {5, 2, 5}}},
		{1, [][3]int{{1, 1, 1}}},
	} {
		got := densityWindows(tc.n)
		if len(got) != len(tc.want) {
			t.Fatalf("n=%d: %d windows %+v, want %d", tc.n, len(got), got, len(tc.want))
		}
		for i, w := range tc.want {
			if g := got[i]; g.Mark != w[0] || g.From != w[1] || g.To != w[2] {
				t.Errorf("n=%d window %d = %+v, want mark %d pods %d-%d", tc.n, i, g, w[0], w[1], w[2])
			}
		}
	}
}

func TestSummarizeDensityGrowth(t *testing.T) {
	const n = 120
	add := &opStats{Latencies: make([]time.Duration, n), Errors: make([]error, n)}
	for i := range add.Latencies {
		add.Latencies[i] = 10 * time.Millisecond
		if i >= 100 {
			add.Latencies[i] = 15 * time.Millisecond // the full node costs 1.5x
		}
	}
	d := summarizeDensity("x", add, &opStats{Latencies: make([]time.Duration, n), Errors: make([]error, n)})
	if d.Growth == nil || *d.Growth != 1.5 {
		t.Fatalf("growth = %v, want 1.5", d.Growth)
	}
	if w := d.window(110); w == nil || w.MedianMs != 15 {
		t.Fatalf("window at 110 = %+v, want median 15ms", w)
	}
	if len(d.LatenciesMs) != n {
		t.Fatalf("%d latencies kept, want %d", len(d.LatenciesMs), n)
	}
}
