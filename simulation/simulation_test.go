package simulation

import (
	"flag"
	"fmt"
	"strings"
	"testing"
	"time"
)

var (
	seeds   = flag.Int("sim.seeds", 200, "how many seeds TestSimulatedSchedules runs (from -sim.first)")
	first   = flag.Uint64("sim.first", 1, "the first seed of the run")
	oneSeed = flag.Uint64("sim.seed", 0, "replay only this seed, printing its whole trace with -v")
	steps   = flag.Int("sim.steps", 300, "scheduler steps with faults per seed, before it settles")
	soak    = flag.Duration("sim.soak", 0, "run seeds for this long (from -sim.first), instead of -sim.seeds")
	twice   = flag.Int("sim.twice", 5, "how many seeds of a run are replayed to prove the schedule deterministic")
)

// Every seed is one schedule of ipamds, the controller's loops and the world around them
// on one in-memory API, with faults; after every step no address may be held twice, every
// held address must be allocated in its pool, and no live pod may lose its address; once
// the run settles nothing may leak. A failure prints the seed and the trace; the seed
// replays it.
func TestSimulatedSchedules(t *testing.T) {
	if *oneSeed != 0 {
		res := replayTwice(t, *oneSeed)
		if testing.Verbose() {
			t.Log("\n" + strings.Join(res.Trace, "\n"))
		}
		return
	}
	start := time.Now()
	lastReport := start
	ran, stepsTaken := 0, 0
	for seed := *first; ; seed++ {
		if *soak > 0 && time.Since(start) > *soak {
			break
		}
		if *soak == 0 && ran >= *seeds {
			break
		}
		var res Result
		if ran < *twice {
			res = replayTwice(t, seed)
		} else {
			res = Run(Config{Seed: seed, Steps: *steps})
			if res.Err != nil {
				again := Run(Config{Seed: seed, Steps: *steps})
				if d := firstDifference(res.Trace, again.Trace); d != "" {
					t.Errorf("seed %d is not deterministic: %s", seed, d)
				}
				fatal(t, res)
			}
		}
		ran++
		stepsTaken += res.Steps
		if *soak > 0 && time.Since(lastReport) > time.Minute {
			lastReport = time.Now()
			t.Logf("soak: %d seeds (%d to %d), %d steps, %v", ran, *first, seed, stepsTaken, time.Since(start).Round(time.Second))
		}
	}
	elapsed := time.Since(start)
	t.Logf("%d seeds, %d steps in %v (%.0f seeds and %.0f steps a minute)", ran, stepsTaken, elapsed.Round(time.Second),
		float64(ran)/elapsed.Minutes(), float64(stepsTaken)/elapsed.Minutes())
}

// replayTwice runs seed twice and fails when the two traces differ: the schedule must
// depend on the seed alone.
func replayTwice(t *testing.T, seed uint64) Result {
	t.Helper()
	a := Run(Config{Seed: seed, Steps: *steps})
	b := Run(Config{Seed: seed, Steps: *steps})
	if d := firstDifference(a.Trace, b.Trace); d != "" {
		t.Errorf("seed %d is not deterministic: %s", seed, d)
	}
	if a.Err != nil {
		fatal(t, a)
	}
	return a
}

func firstDifference(a, b []string) string {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return fmt.Sprintf("trace line %d differs:\n  first run:  %s\n  second run: %s", i+1, a[i], b[i])
		}
	}
	if len(a) != len(b) {
		return fmt.Sprintf("traces differ in length: %d and %d lines", len(a), len(b))
	}
	return ""
}

func fatal(t *testing.T, res Result) {
	t.Helper()
	tail := res.Trace
	if len(tail) > 200 {
		tail = tail[len(tail)-200:]
	}
	t.Fatalf("seed %d, step %d: %v\n\nlast %d trace lines:\n%s\n\nreplay: go test ./simulation -run TestSimulatedSchedules -sim.seed=%d -v",
		res.Seed, res.At, res.Err, len(tail), strings.Join(tail, "\n"), res.Seed)
}
