// Package kernel runs the data plane on a real Linux kernel: a Debian kernel from Debian's
// packages, booted under QEMU (software emulation), with ipvlan, 802.1q, dummy, bonding and
// soft-RoCE, which this machine's kernel lacks. vm.sh fetches the kernel and builds the
// initramfs; TestDataPlaneInAVM starts the control plane here, builds the guest's binaries,
// boots the VM, where tests/kernel/guest runs against this control plane through QEMU's user
// network, and reports each guest test as its own subtest. It then checks, from here, that
// what the VM left in the API holds together.
package kernel

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/underpool/underpool/tests/e2e"
	"github.com/underpool/underpool/tests/harness"
	"github.com/underpool/underpool/tests/kernel/guest"
)

// vmTimeout bounds one VM run (boot, the guest tests, power off); UNDERPOOL_VM_TIMEOUT
// (a Go duration) changes it. Past it QEMU is killed and the test fails with the console.
const vmTimeout = 8 * time.Minute

// The whole chain in one test: fetch, build, control plane, boot, results, invariants. Each
// step's failure names the step; the guest's tests appear as subtests named as in the guest.
func TestDataPlaneInAVM(t *testing.T) {
	ctrllog.SetLogger(logr.Discard()) // the client's own logs say nothing the test does not
	timeout := vmTimeout
	if s := os.Getenv("UNDERPOOL_VM_TIMEOUT"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			t.Fatalf("UNDERPOOL_VM_TIMEOUT=%q is not a duration (e.g. 10m): %v", s, err)
		}
		timeout = d
	}
	work := workDir(t)
	start := time.Now()
	if err := fetchVM(); err != nil {
		t.Fatalf("fetching the VM's kernel and tools: %v", err)
	}
	if err := harness.EnsureTools("test", "kube-apiserver", "etcd", "ipvlan", "vlan", "macvlan", "loopback", "host-device"); err != nil {
		t.Fatalf("tools: %v", err)
	}
	overlay := filepath.Join(work, "overlay")
	if err := buildGuest(overlay); err != nil {
		t.Fatalf("building the guest's binaries: %v", err)
	}
	t.Logf("kernel, tools and guest binaries ready in %s", time.Since(start).Round(time.Millisecond))

	cl, err := startCluster(work, filepath.Join(overlay, guest.BinDir, "ipamd"))
	if err != nil {
		t.Fatalf("control plane: %v", err)
	}
	defer cl.stop()
	if err := writeGuestConfig(overlay, cl); err != nil {
		t.Fatalf("guest config: %v", err)
	}
	initrd := filepath.Join(work, "initrd")
	if err := vmScript("initrd", initrd, overlay); err != nil {
		t.Fatalf("initramfs: %v", err)
	}
	t.Logf("initramfs %s (%d MiB) ready %s after start", initrd, fileSize(initrd)>>20, time.Since(start).Round(time.Millisecond))

	run, err := bootVM(t, work, initrd, timeout)
	if err != nil {
		t.Fatalf("VM: %v", err)
	}
	t.Logf("VM ran %s (wall); guest uptime at the end: %s", run.wall.Round(time.Millisecond), run.guestUptime)
	reportGuest(t, run)

	c, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// the pools' status counts are the controller's copy, written at most once per
	// --counts-interval: a check right after the last DEL may precede the last copy
	var problems, pools []string
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(500 * time.Millisecond) {
		if problems, pools, err = e2e.CheckCluster(c, cl.client, true); err != nil {
			t.Fatalf("checking the API after the VM: %v", err)
		}
		if len(problems) == 0 || time.Now().After(deadline) {
			break
		}
	}
	for _, p := range problems {
		t.Errorf("INVARIANT after the VM: %s", p)
	}
	if len(pools) == 0 && !t.Failed() {
		t.Errorf("the VM made no IPPool: its tests did not run (console: %s)", run.consolePath)
	}
}

// workDir is a temporary directory, kept (and named) when the test fails and
// UNDERPOOL_VM_KEEP is set, so the console log and initramfs can be looked at.
func workDir(t *testing.T) string {
	dir, err := os.MkdirTemp("", "underpool-vm-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() && os.Getenv("UNDERPOOL_VM_KEEP") != "" {
			t.Logf("kept %s (UNDERPOOL_VM_KEEP)", dir)
			return
		}
		os.RemoveAll(dir)
	})
	return dir
}

func fileSize(path string) int64 {
	st, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return st.Size()
}

// tailLines is the end of a text, for messages.
func tailLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
