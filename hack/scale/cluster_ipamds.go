package main

import (
	"bufio"
	"cmp"
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/underpool/underpool/tests/harness"
)

// ipamdProc is one ipamd of the simulated cluster, with its own socket and health port.
type ipamdProc struct {
	*harness.Process
	node, health, socket string
	started              time.Time
	readyAfter           time.Duration
	// poll is how often /readyz is asked (zero: 250 ms), and so the resolution of readyAfter
	poll time.Duration
}

// startIpamd starts the ipamd of node (tag tells a probe's files from the measured one's).
func (e *clusterEnv) startIpamd(node, tag string) (*ipamdProc, error) {
	health, err := harness.FreeLoopbackAddress()
	if err != nil {
		return nil, err
	}
	opts := harness.DefaultIpamdOptions(e.bin, e.cp.KubeconfigPath, node, e.work)
	opts.Socket = filepath.Join(e.work, node+"-"+tag+".sock")
	opts.LogPath = filepath.Join(e.work, "logs", "ipamd-"+node+"-"+tag+".log")
	args := []string{"--kubeconfig", opts.Kubeconfig, "--node-name", node, "--socket", opts.Socket,
		"--health-address", health, "--log-level", "info", "--gc-interval", e.o.gcInterval.String()}
	started := time.Now() // before the fork: the exec is part of the start
	p, err := harness.StartProcess("ipamd-"+node, opts.Bin, args, opts.LogPath)
	if err != nil {
		return nil, err
	}
	return &ipamdProc{Process: p, node: node, health: health, socket: opts.Socket, started: started}, nil
}

// waitReady polls /readyz: ready means caches synced and this node's Endpoints reconciled.
func (d *ipamdProc) waitReady(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	last := "no answer yet"
	for {
		if exited, err := d.Exited(); exited {
			return fmt.Errorf("ipamd %s exited: %v (log %s)", d.node, err, d.LogPath)
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+d.health+"/readyz", nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				d.readyAfter = time.Since(d.started)
				return nil
			}
			last = resp.Status
		} else {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("ipamd %s not ready after %s: %s (log %s)", d.node, timeout, last, d.LogPath)
		case <-time.After(cmp.Or(d.poll, 250*time.Millisecond)):
		}
	}
}

// startIpamds starts ipamds on node-0, node-1, ... up to --ipamds, a batch at a time, as
// long as memory allows: each new one needs growth times the largest resident memory seen
// so far (the first one's peak while it started alone, then the running ones'), and
// --reserve-mib stays free for the apiserver, etcd and the rest of the machine.
func (e *clusterEnv) startIpamds(ctx context.Context, rep *clusterReport) error {
	rep.Ipamds.Requested = e.o.ipamds
	start := func(from, n int) error {
		batch := make([]*ipamdProc, n)
		for k := range batch {
			d, err := e.startIpamd(nodeName(from+k), "run")
			if err != nil {
				return err
			}
			batch[k] = d
			e.run.add(func() { _ = d.Stop() })
		}
		var wg sync.WaitGroup
		errs := make([]error, n)
		for k, d := range batch {
			wg.Add(1)
			go func() { defer wg.Done(); errs[k] = d.waitReady(ctx, ipamdReadyTimeout) }()
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				return err
			}
		}
		e.ipamds = append(e.ipamds, batch...)
		return nil
	}
	say("starting ipamd 1 of %d alone (its peak memory sizes the rest)", e.o.ipamds)
	if err := start(0, 1); err != nil {
		return err
	}
	first, err := readMemory(e.ipamds[0].Pid())
	if err != nil {
		return err
	}
	rep.Ipamds.PeakKiBFirst = first.HWM
	largest := first.HWM
	for len(e.ipamds) < e.o.ipamds {
		avail, err := memAvailableKiB()
		if err != nil {
			return err
		}
		for _, d := range e.ipamds {
			if m, err := readMemory(d.Pid()); err == nil {
				largest = max(largest, m.RSS)
			}
		}
		need := int(float64(largest) * growth)
		fit := (avail - e.o.reserveMiB*1024) / need
		if fit < 1 {
			rep.Ipamds.Limit = fmt.Sprintf("stopped at %d of %d ipamds: %.0f MiB available, %d MiB kept for the control plane, "+
				"one more needs %.0f MiB (%.1f x %.0f MiB, the largest ipamd so far: they grow after start)",
				len(e.ipamds), e.o.ipamds, kib(avail), e.o.reserveMiB, kib(need), growth, kib(largest))
			say("%s", rep.Ipamds.Limit)
			break
		}
		n := min(e.o.batch, fit, e.o.ipamds-len(e.ipamds))
		say("starting ipamds %d-%d of %d (%.0f MiB available)", len(e.ipamds)+1, len(e.ipamds)+n, e.o.ipamds, kib(avail))
		if err := start(len(e.ipamds), n); err != nil {
			return err
		}
	}
	rep.Ipamds.Started = len(e.ipamds)
	for _, d := range e.ipamds {
		rep.Ipamds.ReadySeconds = append(rep.Ipamds.ReadySeconds, d.readyAfter.Seconds())
	}
	return nil
}

// growth: an ipamd's resident memory after minutes of recycling rounds over the one it
// had when ready (1.5x to 1.9x measured here), with some margin.
const growth = 2.0

// memory is what /proc/PID/status says of a process' resident memory, in KiB.
type memory struct{ RSS, HWM int }

func readMemory(pid int) (memory, error) {
	vals, err := procFields(fmt.Sprintf("/proc/%d/status", pid), "VmRSS:", "VmHWM:")
	return memory{RSS: vals[0], HWM: vals[1]}, err
}

func memAvailableKiB() (int, error) {
	vals, err := procFields("/proc/meminfo", "MemAvailable:")
	return vals[0], err
}

// procFields reads "Key: <n> kB" lines of a /proc file, in the order of keys.
func procFields(path string, keys ...string) ([]int, error) {
	out := make([]int, len(keys))
	f, err := os.Open(path)
	if err != nil {
		return out, err
	}
	defer f.Close()
	found := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		for k, key := range keys {
			if v, ok := strings.CutPrefix(sc.Text(), key); ok {
				if _, err := fmt.Sscanf(strings.TrimSpace(v), "%d", &out[k]); err != nil {
					return out, fmt.Errorf("%s %s: %w", path, key, err)
				}
				found++
			}
		}
	}
	if found < len(keys) {
		return out, fmt.Errorf("%s: missing one of %v", path, keys)
	}
	return out, sc.Err()
}
