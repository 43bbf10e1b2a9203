package main

import (
	"bufio"
	"context"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/tests/harness"
)

// memoryCase writes o.endpoints Endpoints for one node, then starts that node's ipamd: it
// syncs them all and re-marks every address in the pool before serving (one batched
// commit), and its resident memory is read from /proc.
func (e *env) memoryCase(ctx context.Context, run *stopper) ([]string, error) {
	const node = "mem-node"
	pool := &v1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: "mem", Finalizers: protected}, Spec: v1.IPPoolSpec{Subnet: "10.250.0.0/17"}}
	if err := e.kube.Create(ctx, pool); err != nil {
		return nil, err
	}
	say("writing %d Endpoints for %s (not timed)", e.o.endpoints, node)
	base := netip.MustParseAddr("10.250.0.10")
	addrs := make([]netip.Addr, e.o.endpoints)
	a := base
	for i := range addrs {
		addrs[i] = a
		a = a.Next()
	}
	if err := parallel(e.o.endpoints, 64, func(i int) error {
		// with the finalizer, as ipamd writes them: one without it would be given it at
		// start (an upgrade's one-time cost), which this run does not measure
		ep := &v1.Endpoint{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: fmt.Sprintf("mem-%05d", i),
			Finalizers: []string{v1.EndpointProtection}},
			Status: v1.EndpointStatus{PodUID: fmt.Sprintf("uid-%d", i), Node: node, Interfaces: []v1.EndpointInterface{{
				ContainerID: fmt.Sprintf("ctr-mem-%05d", i), Interface: "net1", Network: "mem", PodUID: fmt.Sprintf("uid-%d", i),
				IPs: []v1.EndpointIP{{Address: addrs[i].String() + "/17", Pool: "mem"}}, Created: metav1.Now()}}}}
		return e.kube.Create(ctx, ep)
	}); err != nil {
		return nil, err
	}
	opts := harness.DefaultIpamdOptions(e.bin, e.cp.KubeconfigPath, node, e.work)
	opts.ExtraArgs = []string{"--gc-interval=0"}
	start := time.Now()
	d, err := harness.StartIpamd(opts)
	if err != nil {
		return nil, err
	}
	run.add(func() { _ = d.Stop() })
	ready := time.Since(start)
	time.Sleep(2 * time.Second) // let the post-start garbage settle before reading RSS
	rss, err := residentKiB(d.Pid())
	if err != nil {
		return nil, err
	}
	fresh, _ := allocationState(ctx, e.kube, "mem") // missing: nothing re-marked, reported below
	verdict := "ok"
	if rss >= 64*1024 {
		verdict = "MISSED (target, not a failure)"
	}
	marked := "ok"
	if fresh.AllocatedIPCount != int64(e.o.endpoints) {
		marked = "FAILED"
	}
	return []string{
		fmt.Sprintf("## ipamd with %d Endpoints on its node\n", e.o.endpoints),
		"| measure | value | verdict |", "|---|---:|---|",
		fmt.Sprintf("| start to ready (sync, reconcile, re-mark every address) | %.1f s | |", ready.Seconds()),
		fmt.Sprintf("| addresses re-marked in the pool at start | %d of %d | %s |", fresh.AllocatedIPCount, e.o.endpoints, marked),
		fmt.Sprintf("| PoolAllocation state.allocated size | %d bytes (%q) | |", len(fresh.Allocated), truncate(fresh.Allocated, 40)),
		fmt.Sprintf("| ipamd resident memory | %.1f MiB | %s (target < 64 MiB) |", float64(rss)/1024, verdict),
		"",
	}, nil
}

func residentKiB(pid int) (int, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			var kib int
			_, err := fmt.Sscanf(strings.TrimSpace(v), "%d kB", &kib)
			return kib, err
		}
	}
	return 0, fmt.Errorf("no VmRSS for pid %d", pid)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// protected is the finalizer the controller adds to every pool (ipamd hands nothing out
// of a pool without it); no controller runs in these measurements, so pools are made
// with it.
var protected = []string{v1.PoolProtection}
