package main

import (
	"context"
	"path/filepath"
	"sync"
	"time"
)

// allocSample is what one allocation's plugin calls saw: the ADD, then the DEL the runtime
// sends after it (after a failed ADD too, as the CNI spec asks of a runtime).
type allocSample struct {
	add, del       time.Duration // wall time of each plugin process, as the runtime sees it
	addErr, delErr error
	// late is how long the allocation waited for a free plugin slot past its start time.
	late time.Duration
}

// paced starts n operations at rate per second, at most width at once: operation i is due
// at i/rate after the first; one that finds every slot busy starts when a slot frees, and
// says how late in its sample. It returns when every operation has finished.
func paced(ctx context.Context, n int, rate float64, width int, op func(i int) allocSample) []allocSample {
	out := make([]allocSample, n)
	slots := make(chan struct{}, width)
	var wg sync.WaitGroup
	start := time.Now()
	for i := 0; i < n && ctx.Err() == nil; i++ {
		due := start.Add(time.Duration(float64(i) / rate * float64(time.Second)))
		if d := time.Until(due); d > 0 {
			select {
			case <-ctx.Done():
			case <-time.After(d):
			}
		}
		select {
		case <-ctx.Done():
			continue
		case slots <- struct{}{}:
		}
		late := max(time.Since(due), 0)
		wg.Add(1)
		go func() {
			defer func() { <-slots; wg.Done() }()
			out[i] = op(i)
			out[i].late = late
		}()
	}
	wg.Wait()
	return out
}

// allocCallTimeout bounds one plugin call: far above any latency worth measuring, it only
// keeps a stuck ipamd from hanging the run (the call then fails with a timeout reason).
const allocCallTimeout = 2 * time.Minute

// churnAllocations runs the phase's allocations against the allocating ipamds: pod i ADDs
// through its node's ipamd, then DELs.
func (e *clusterEnv) churnAllocations(ctx context.Context, pods []allocPod, allocating []*ipamdProc) []allocSample {
	a := e.o.alloc
	plugin := ipamPlugin{path: filepath.Join(e.bin, "underpool-ipam"), work: e.work}
	pools := []string{allocPoolName}
	call := func(verb string, p allocPod) (time.Duration, error) {
		cctx, cancel := context.WithTimeout(ctx, allocCallTimeout)
		defer cancel()
		t := time.Now()
		_, err := plugin.call(cctx, verb, allocating[p.node].socket, "scale-alloc", pools, p.podRef)
		return time.Since(t), err
	}
	return paced(ctx, len(pods), a.rate, a.inflight, func(i int) allocSample {
		var s allocSample
		s.add, s.addErr = call("ADD", pods[i])
		s.del, s.delErr = call("DEL", pods[i])
		return s
	})
}
