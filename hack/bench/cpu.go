package main

import (
	"fmt"
	"strings"
	"syscall"
	"time"

	"github.com/underpool/underpool/tests/harness"
)

// cpuMeter measures the CPU time each part of the path spends, in the kernel's own
// accounting: wall-clock time on a shared 2-core machine moves with whatever else runs,
// CPU time per pod hardly does, so it says where an ADD's cost goes.
type cpuMeter struct {
	daemons map[string]int // name (ipamd, kube-apiserver, etcd) -> pid
}

// cpuSample is CPU time used so far, by part.
type cpuSample map[string]time.Duration

// pluginsPart names the CNI plugin processes: every process the bench started and
// reaped (nsenter, the plugin, the plugins it called), from getrusage(RUSAGE_CHILDREN).
const pluginsPart = "plugins"

func (m *cpuMeter) sample() cpuSample {
	s := cpuSample{}
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_CHILDREN, &ru) == nil {
		s[pluginsPart] = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	for name, pid := range m.daemons {
		if d, err := harness.ProcCPU(pid); err == nil {
			s[name] = d
		}
	}
	return s
}

// cpuPerPod is the CPU milliseconds per pod each part used between two samples.
func cpuPerPod(before, after cpuSample, pods int) map[string]float64 {
	out := map[string]float64{}
	for k, v := range after {
		if d := v - before[k]; d > 0 {
			out[k] = ms(d) / float64(pods)
		}
	}
	return out
}

// cpuCell renders the per-pod CPU as "plugins 3.1, ipamd 0.4, ..." in a fixed order.
func cpuCell(c map[string]float64) string {
	var parts []string
	for _, k := range []string{pluginsPart, "ipamd", "kube-apiserver", "etcd"} {
		if v, ok := c[k]; ok {
			parts = append(parts, fmt.Sprintf("%s %.2f", k, v))
		}
	}
	return strings.Join(parts, ", ")
}
