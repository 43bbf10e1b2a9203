package kernel

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/underpool/underpool/tests/harness"
	"github.com/underpool/underpool/tests/kernel/guest"
)

// delegates are the containernetworking plugins the guest's tests call, from the tool cache.
var delegates = []string{"ipvlan", "vlan", "macvlan", "loopback", "host-device"}

// vmScript runs tests/kernel/vm.sh, its output on our stderr (a first fetch takes a while
// and should be seen progressing).
func vmScript(args ...string) error {
	script := filepath.Join(harness.RepoRoot(), "tests", "kernel", "vm.sh")
	cmd := exec.Command("bash", append([]string{script}, args...)...)
	cmd.Dir = harness.RepoRoot()
	var stderr strings.Builder
	cmd.Stdout, cmd.Stderr = os.Stderr, &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("vm.sh %s: %w\n%s", strings.Join(args, " "), err, stderr.String())
	}
	os.Stderr.WriteString(stderr.String())
	return nil
}

// vmScriptOutput is vmScript for a command that answers on stdout (vm.sh kernel).
func vmScriptOutput(args ...string) (string, error) {
	script := filepath.Join(harness.RepoRoot(), "tests", "kernel", "vm.sh")
	out, err := exec.Command("bash", append([]string{script}, args...)...).Output()
	if err != nil {
		var stderr string
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		return "", fmt.Errorf("vm.sh %s: %w\n%s", strings.Join(args, " "), err, stderr)
	}
	return strings.TrimSpace(string(out)), nil
}

// fetchVM fills the VM cache once; several test processes may ask at once, so under a lock.
func fetchVM() error {
	if err := os.MkdirAll(harness.CacheDir(), 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(filepath.Join(harness.CacheDir(), ".vm.lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		return err
	}
	return vmScript("fetch")
}

// buildGuest builds what the guest runs into overlay (laid out as the VM's root): the
// project's ipamd and plugins and the guest's test binary, statically linked (the VM has
// no C library but what vm.sh copies for the programs that need one), test2json to frame
// the results, and the delegate plugins from the tool cache.
func buildGuest(overlay string) error {
	bin := filepath.Join(overlay, guest.BinDir)
	if err := os.MkdirAll(bin, 0o755); err != nil {
		return err
	}
	ldflags := "-s -w" // no symbols: the initramfs is smaller and the VM unpacks it faster
	builds := [][]string{
		{"build", "-trimpath", "-ldflags", ldflags, "-o", bin + "/", "./cmd/ipamd", "./plugins/underpool", "./plugins/underpool-ipam"},
		{"test", "-c", "-trimpath", "-ldflags", ldflags, "-o", filepath.Join(overlay, guest.Dir, "guest.test"), "./tests/kernel/guest"},
		{"build", "-trimpath", "-ldflags", ldflags, "-o", filepath.Join(overlay, guest.Dir, "test2json"), "cmd/test2json"},
	}
	for _, args := range builds {
		cmd := exec.Command("go", args...)
		cmd.Dir = harness.RepoRoot()
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), err, out)
		}
	}
	for _, d := range delegates {
		data, err := os.ReadFile(filepath.Join(harness.CacheBinDir(), d))
		if err != nil {
			return fmt.Errorf("delegate plugin %s: %w (tests/tools/build.sh cni builds it)", d, err)
		}
		if err := os.WriteFile(filepath.Join(bin, d), data, 0o755); err != nil {
			return err
		}
	}
	return nil
}
