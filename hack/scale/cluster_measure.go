package main

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/underpool/underpool/tests/harness"
)

// steadyWindow measures the running ipamds for o.window: requests by client from the audit
// log, then every ipamd's resident memory and the apiserver's open watches.
func (e *clusterEnv) steadyWindow(ctx context.Context, rep *clusterReport) error {
	say("%d ipamds ready; settling %s, then a steady window of %s", len(e.ipamds), e.o.settle, e.o.window)
	time.Sleep(e.o.settle)
	offset := auditOffset(e.auditLog)
	from := time.Now()
	cpuFrom, cpuErr := harness.ProcCPU(e.cp.APIServer.Pid())
	time.Sleep(e.o.window)
	to := time.Now()
	if cpuTo, err := harness.ProcCPU(e.cp.APIServer.Pid()); err == nil && cpuErr == nil {
		// the apiserver's idle cost, which the allocation churn's CPU is measured net of
		rep.Steady.APIServerCPUPerSecond = (cpuTo - cpuFrom).Seconds() / to.Sub(from).Seconds()
	}
	for i, d := range e.ipamds {
		if exited, err := d.Exited(); exited {
			return fmt.Errorf("ipamd %s exited during the window: %v (log %s)", d.node, err, d.LogPath)
		}
		mem, err := readMemory(d.Pid())
		if err != nil {
			return err
		}
		if i == 0 {
			rep.Steady.RSSKiBOne = mem.RSS
		}
		rep.Steady.RSSKiB = append(rep.Steady.RSSKiB, mem.RSS)
	}
	sorted := append([]int(nil), rep.Steady.RSSKiB...)
	sort.Ints(sorted)
	rep.Steady.RSSKiBMedian, rep.Steady.RSSKiBMax = sorted[len(sorted)/2], sorted[len(sorted)-1]
	if text, err := e.apiserverMetrics(ctx); err == nil {
		rep.Steady.APIServerWatches, rep.Steady.APIServerWatchesKnown = apiserverWatches(text)
	}
	time.Sleep(e.o.drain) // requests received before `to` still being answered and logged
	say("reading the audit log for the window")
	counts, err := countRequests(e.auditLog, offset, from, to)
	if err != nil {
		return fmt.Errorf("audit log: %w", err)
	}
	rep.Steady.WindowSeconds = to.Sub(from).Seconds()
	rep.Steady.Requests = counts
	minutes := rep.Steady.WindowSeconds / 60
	rep.Steady.IpamdRequestsPerMinute = float64(counts.IpamdTotal) / minutes
	rep.Steady.PerIpamdRequestsPerMinute = rep.Steady.IpamdRequestsPerMinute / float64(len(e.ipamds))
	rep.Steady.GCRounds = rep.Steady.WindowSeconds / e.o.gcInterval.Seconds()
	return nil
}

// churnBurst creates and deletes o.churn pods with their Endpoints on nodes without an
// ipamd, and counts the watch events node-0's ipamd received meanwhile (its own metric),
// and those the apiserver sent to all watchers.
func (e *clusterEnv) churnBurst(ctx context.Context, rep *clusterReport) error {
	c := &rep.Churn
	c.Pods = e.o.churn
	switch {
	case e.o.churn == 0:
		c.Skipped = "--churn 0"
		return nil
	case e.o.nodes <= len(e.ipamds) || e.o.nodes <= e.o.ipamds:
		c.Skipped = "every node runs an ipamd: no other node to churn on"
		return nil
	}
	probe := e.ipamds[0]
	before, err := ipamdMetrics(ctx, probe.health)
	if err != nil {
		return err
	}
	apiBefore, _ := e.apiserverMetrics(ctx)
	say("churn: %d pods with Endpoints created and deleted on nodes without an ipamd", e.o.churn)
	start := time.Now()
	if err := e.objects.churn(ctx, e.o.churn); err != nil {
		return err
	}
	c.Seconds = time.Since(start).Seconds()
	time.Sleep(e.o.drain) // watch events still in flight
	after, err := ipamdMetrics(ctx, probe.health)
	if err != nil {
		return err
	}
	apiAfter, _ := e.apiserverMetrics(ctx)
	b, found := metricByLabel(before, ipamdWatchEventsMetric, "resource")
	a, _ := metricByLabel(after, ipamdWatchEventsMetric, "resource")
	if found {
		c.IpamdWatchEvents = delta(a, b)
		total := sum(c.IpamdWatchEvents)
		c.IpamdWatchEventsTotal = &total
	}
	wb, okB := apiserverWatchEvents(apiBefore)
	wa, okA := apiserverWatchEvents(apiAfter)
	if okB && okA {
		c.APIServerWatchEvents = delta(wa, wb)
	}
	return nil
}
