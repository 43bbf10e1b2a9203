package kernel

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/underpool/underpool/tests/harness"
)

// vmRun is how one VM run went, as far as the host can tell.
type vmRun struct {
	wall        time.Duration
	timedOut    bool
	exitCode    int    // of /underpool/run, as init reported it; -1 when it never did
	guestUptime string // at that report
	console     string // everything the guest printed on its console (ttyS0)
	consolePath string
	resultsPath string // test2json's events (ttyS1)
	qemuErr     error
}

// bootVM boots the cached kernel with initrd under QEMU's software emulation (KVM guests hang
// on this machine after the kernel is decompressed) and waits for it to power off, at most
// timeout; then QEMU is stopped. The guest's console goes to console.log, its second serial
// port (the results) to results.json. UNDERPOOL_VM_CPUS sets the virtual CPUs: the default,
// one, measured faster here than two (33 s of guest time against 41 s on this 2-core
// machine: QEMU's threads then compete with ours and each other), and it leaves a core to
// the rest of make test.
func bootVM(t *testing.T, work, initrd string, timeout time.Duration) (*vmRun, error) {
	kernel, err := vmScriptOutput("kernel")
	if err != nil {
		return nil, err
	}
	cpus := "1"
	if s := os.Getenv("UNDERPOOL_VM_CPUS"); s != "" {
		cpus = s
	}
	run := &vmRun{exitCode: -1, consolePath: filepath.Join(work, "console.log"), resultsPath: filepath.Join(work, "results.json")}
	args := []string{
		"-accel", "tcg", "-cpu", "max", "-smp", cpus, "-m", "1024",
		"-nodefaults", "-display", "none", "-no-reboot",
		"-kernel", kernel, "-initrd", initrd,
		"-append", "console=ttyS0 quiet panic=-1",
		// user networking: the guest is 10.0.2.15, this machine's loopback is 10.0.2.2
		"-netdev", "user,id=n0", "-device", "virtio-net-pci,netdev=n0",
		"-serial", "stdio", "-serial", "file:" + run.resultsPath,
	}
	start := time.Now()
	p, err := harness.StartProcessWith(harness.ProcessOptions{Name: "qemu", Bin: "qemu-system-x86_64", Args: args, LogPath: run.consolePath})
	if err != nil {
		return nil, err
	}
	select {
	case <-p.Done():
		_, run.qemuErr = p.Exited()
	case <-time.After(timeout):
		run.timedOut = true
		run.qemuErr = p.Stop()
	}
	run.wall = time.Since(start)
	data, _ := os.ReadFile(run.consolePath)
	run.console = string(data)
	run.exitCode, run.guestUptime = exitReport(run.console)
	for _, line := range strings.Split(run.console, "\n") {
		if strings.Contains(line, "underpool-vm:") {
			t.Log(strings.TrimSpace(line))
		}
	}
	return run, nil
}

var exitLine = regexp.MustCompile(`underpool-vm: exit (\d+) at uptime ([0-9.]+) s`)

// exitReport finds init's last word: how /underpool/run ended, and when.
func exitReport(console string) (code int, uptime string) {
	m := exitLine.FindStringSubmatch(console)
	if m == nil {
		return -1, "unknown"
	}
	code, _ = strconv.Atoi(m[1])
	return code, m[2] + "s"
}

// failure says why a run that produced no results failed, with the end of the console.
func (r *vmRun) failure() string {
	var why string
	switch {
	case r.timedOut:
		why = fmt.Sprintf("the VM did not power off within its timeout and was stopped after %s (UNDERPOOL_VM_TIMEOUT raises it)", r.wall.Round(time.Second))
	case r.qemuErr != nil:
		why = fmt.Sprintf("QEMU failed: %v", r.qemuErr)
	case !strings.Contains(r.console, "underpool-vm: booted"):
		why = "the kernel never ran init"
	case r.exitCode < 0:
		why = "init never reported the end of the guest's tests"
	default:
		why = fmt.Sprintf("the guest's run ended with %d", r.exitCode)
	}
	return fmt.Sprintf("%s; end of the console (%s):\n%s", why, r.consolePath, tailLines(r.console, 30))
}
