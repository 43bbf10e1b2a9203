package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/underpool/underpool/tests/harness"
)

var errInterrupted = errors.New("interrupted")

// callGate lets an interrupt stop new CNI calls and wait for the ones in flight
// before namespaces and the apiserver go away. Killing a plugin mid-call instead
// would orphan the IPAM plugin it started (whereabouts then retries a dead apiserver
// for minutes), so calls run to completion and the gate only stops new ones.
type callGate struct {
	mu       sync.RWMutex // held shared by every call, exclusively once closed
	stop     chan struct{}
	once     sync.Once
	inFlight atomic.Int64
}

func newCallGate() *callGate { return &callGate{stop: make(chan struct{})} }

// enter admits one call; false once the gate is closing.
func (g *callGate) enter() bool {
	if g.stopped() {
		return false
	}
	g.mu.RLock() // blocks for good if close is waiting: we are exiting anyway
	g.inFlight.Add(1)
	return true
}

func (g *callGate) leave() {
	g.inFlight.Add(-1)
	g.mu.RUnlock()
}

func (g *callGate) stopped() bool {
	select {
	case <-g.stop:
		return true
	default:
		return false
	}
}

// close stops new calls and waits up to timeout for those in flight.
func (g *callGate) close(timeout time.Duration) {
	g.once.Do(func() { close(g.stop) })
	if n := g.inFlight.Load(); n > 0 {
		fmt.Fprintf(os.Stderr, "bench: waiting up to %s for %d CNI calls in flight\n", timeout, n)
	}
	done := make(chan struct{})
	go func() { g.mu.Lock(); close(done) }() // never unlocked: no call may start after this
	select {
	case <-done:
	case <-time.After(timeout):
		fmt.Fprintf(os.Stderr, "bench: %d CNI calls still running after %s; cleaning up anyway\n", g.inFlight.Load(), timeout)
	}
}

// opStats is the outcome of one phase: every pod's latency and error.
type opStats struct {
	Latencies []time.Duration // per pod, from libcni call to return (failures included)
	Errors    []error         // per pod; nil when the call succeeded
	Wall      time.Duration   // first call start to last call return
}

// runOnce ADDs every pod then DELs every pod at the given parallelism. Pods (netns and
// Pod object) are prepared up front, untimed, and the netns is reused for DEL, as a
// runtime keeps the sandbox. A pod whose ADD failed is DELed all the same, as a
// runtime would to clean up.
func runOnce(ctx context.Context, env *setupEnv, cni *harness.CNI, ip *ipam, opts *options, par int, live *netnsSet, gate *callGate) (add, del *result, err error) {
	pods, release, err := preparePods(ctx, env, ip.name, fmt.Sprintf("p%d", par), opts.pods, live)
	defer func() {
		if e := release(); e != nil && err == nil {
			err = e
		}
	}()
	if err != nil {
		return nil, nil, err
	}

	phase := func(op string, call func(context.Context, harness.Runtime) error) *result {
		progress("%s: %s %d pods, %d parallel ...", ip.name, op, opts.pods, par)
		before, apiErr := env.api.snapshot(ctx)
		cpu0 := env.cpu.sample()
		st := runPool(ctx, gate, pods, par, opts.opTimeout, op, ip.name, call)
		r := summarize(ip.name, par, op, st)
		r.CPUPerPod = cpuPerPod(cpu0, env.cpu.sample(), len(pods))
		if apiErr == nil {
			var after map[string]float64
			if after, apiErr = env.api.snapshot(ctx); apiErr == nil {
				r.APIDetail, r.APIPerPod = perPod(before, after, len(pods))
			}
		}
		if apiErr != nil {
			progress("%s: %s: API requests not counted: %v", ip.name, op, apiErr)
		}
		progress("%s: %s done in %.2fs: %.1f pods/s, p50 %.1fms, p99 %.1fms, %d failed; API requests per pod %.2f (%s); CPU ms per pod: %s",
			ip.name, op, r.TotalSeconds, r.PodsPerSecond, r.P50ms, r.P99ms, r.Failed, r.APIPerPod, r.APIDetail, cpuCell(r.CPUPerPod))
		for _, e := range r.Errors {
			progress("%s: %s error: %s", ip.name, op, e)
		}
		return r
	}
	add = phase("ADD", func(ctx context.Context, rt harness.Runtime) error {
		_, err := cni.Add(ctx, ip.conflist, rt)
		return err
	})
	if gate.stopped() {
		return nil, nil, errInterrupted
	}
	// Counting between the phases (untimed) proves the leftover counter sees
	// allocations at all: a counter stuck at zero would hide every leak.
	held, detail, err := heldSettled(ctx, ip, len(pods))
	if err != nil {
		return nil, nil, fmt.Errorf("%s: counting allocations after ADD: %w", ip.name, err)
	}
	add.Held, add.HeldDetail = &held, detail
	del = phase("DEL", func(ctx context.Context, rt harness.Runtime) error {
		return cni.Del(ctx, ip.conflist, rt)
	})
	if gate.stopped() {
		return nil, nil, errInterrupted
	}
	return add, del, nil
}

// runPool runs call for every pod on par workers, timing each call. Slow phases
// (whereabouts) report how far they got every few seconds so they never look hung.
func runPool(ctx context.Context, gate *callGate, pods []harness.Runtime, par int, timeout time.Duration, op, name string,
	call func(context.Context, harness.Runtime) error) *opStats {
	st := &opStats{Latencies: make([]time.Duration, len(pods)), Errors: make([]error, len(pods))}
	jobs := make(chan int)
	var done atomic.Int64
	var wg sync.WaitGroup

	stopTicker := make(chan struct{})
	go func() {
		t := time.NewTicker(5 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-stopTicker:
				return
			case <-t.C:
				progress("%s: %s %d/%d", name, op, done.Load(), len(pods))
			}
		}
	}()

	start := time.Now()
	for range par {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				if !gate.enter() {
					st.Errors[i] = fmt.Errorf("pod %s: %w", pods[i].PodName, errInterrupted)
					continue
				}
				cctx, cancel := context.WithTimeout(ctx, timeout)
				t0 := time.Now()
				err := call(cctx, pods[i])
				st.Latencies[i] = time.Since(t0)
				cancel()
				gate.leave()
				if err != nil {
					st.Errors[i] = fmt.Errorf("pod %s: %w", pods[i].PodName, err)
				}
				done.Add(1)
			}
		}()
	}
	for i := range pods {
		select {
		case jobs <- i:
			continue
		case <-gate.stop:
		}
		// Interrupted: the pods never handed out count as failed, not as instant.
		for j := i; j < len(pods); j++ {
			st.Errors[j] = fmt.Errorf("pod %s: %w", pods[j].PodName, errInterrupted)
		}
		break
	}
	close(jobs)
	wg.Wait()
	st.Wall = time.Since(start)
	close(stopTicker)
	return st
}

// settleWait bounds how long heldSettled waits for a count to reach what is expected.
const settleWait = 10 * time.Second

// heldSettled counts what an IPAM holds once it holds want, or after settleWait. underpool
// answers a DEL when the record is gone and frees the address just after, and keeps one
// address per pool prefetched for a node's next ADD for a second after the last: a count
// read at once would take those for a leak. A leak, or a count stuck at zero, stays.
func heldSettled(ctx context.Context, ip *ipam, want int) (int, string, error) {
	deadline := time.Now().Add(settleWait)
	for {
		held, detail, err := ip.held(ctx)
		if err != nil || held == want || time.Now().After(deadline) {
			return held, detail, err
		}
		time.Sleep(100 * time.Millisecond)
	}
}
