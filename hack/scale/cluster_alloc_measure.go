package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/underpool/underpool/tests/harness"
)

// allocSnapshot is what the phase reads before and after the churn.
type allocSnapshot struct {
	at     time.Time
	ipamds []string // each ipamd's /metrics, in e.ipamds order
	api    string   // kube-apiserver's /metrics
	// apiCPU and etcdCPU are utime+stime of the processes so far (/proc/<pid>/stat).
	apiCPU, etcdCPU time.Duration
	load            string // /proc/loadavg's first three fields: the machine is shared
}

// snapshot reads every ipamd's metrics, the apiserver's, and the control plane's CPU.
func (e *clusterEnv) snapshot(ctx context.Context) (allocSnapshot, error) {
	s := allocSnapshot{at: time.Now(), ipamds: make([]string, len(e.ipamds)), load: loadAverage()}
	if err := parallel(len(e.ipamds), 8, func(i int) error {
		text, err := ipamdMetrics(ctx, e.ipamds[i].health)
		if err != nil {
			return fmt.Errorf("ipamd %s metrics: %w", e.ipamds[i].node, err)
		}
		s.ipamds[i] = text
		return nil
	}); err != nil {
		return s, err
	}
	var err error
	if s.api, err = e.apiserverMetrics(ctx); err != nil {
		return s, fmt.Errorf("apiserver metrics: %w", err)
	}
	if s.apiCPU, err = harness.ProcCPU(e.cp.APIServer.Pid()); err != nil {
		return s, err
	}
	s.etcdCPU, _ = harness.ProcCPU(e.cp.Etcd.Pid())
	return s, nil
}

func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "n/a"
	}
	f := strings.Fields(string(b))
	return strings.Join(f[:min(3, len(f))], " ")
}

// allocPhase runs the allocation churn and fills rep.Alloc: pods made first (not
// measured), then a snapshot, the churn, a drain for watch events in flight, a snapshot.
func (e *clusterEnv) allocPhase(ctx context.Context, rep *clusterReport) error {
	a, r := e.o.alloc, &rep.Alloc
	if a.rate == 0 {
		r.Skipped = "--alloc-rate 0"
		return nil
	}
	allocating := e.ipamds[:min(a.ipamds, len(e.ipamds))]
	nodes := make([]string, len(allocating))
	for i, d := range allocating {
		nodes[i] = d.node
	}
	say("allocation churn: creating %d pods on the %d allocating nodes (not measured)", a.count(), len(nodes))
	pods, err := e.objects.createAllocPods(ctx, a.count(), nodes)
	if err != nil {
		return fmt.Errorf("allocation pods: %w", err)
	}
	time.Sleep(e.o.drain) // the allocating ipamds' pod informers catch up; their events fall before the window
	before, err := e.snapshot(ctx)
	if err != nil {
		return err
	}
	say("allocation churn: %d ADD+DEL at %g/s on %d of %d ipamds, at most %d plugin processes at once",
		len(pods), a.rate, len(allocating), len(e.ipamds), a.inflight)
	start := time.Now()
	samples := e.churnAllocations(ctx, pods, allocating)
	churned := time.Since(start)
	time.Sleep(e.o.drain) // watch events and commits still in flight
	after, err := e.snapshot(ctx)
	if err != nil {
		return err
	}
	in := allocInputs{before: before, after: after, samples: samples, allocating: len(allocating),
		seconds: churned.Seconds(), baselineCPU: rep.Steady.APIServerCPUPerSecond}
	*r = in.results(a, r.PoolSize, r.Held, r.AllocatedBytes)
	r.project(e.o.projectNodes)
	say("allocation churn: %d allocations in %.1f s, %d ADDs failed; ADD p50 %.0f ms p99 %.0f ms",
		r.Allocations, r.Seconds, r.AddFailed, r.AddP50Ms, r.AddP99Ms)
	return nil
}
