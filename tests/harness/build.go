package harness

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
)

// ProjectBinaries are the packages BuildProjectBinaries builds; each binary is
// named after the last element of its package path.
var ProjectBinaries = []string{"./plugins/underpool", "./plugins/underpool-ipam", "./cmd/ipamd"}

// RunBuildScript runs tests/tools/build.sh <target> (all, test, demo, apt,
// controlplane, cni, whereabouts, helm), streaming its output to stderr so a slow first build is
// visibly progressing rather than looking hung.
func RunBuildScript(target string) error {
	script := filepath.Join(RepoRoot(), "tests", "tools", "build.sh")
	cmd := exec.Command("bash", script, target)
	cmd.Dir = RepoRoot()
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %s: %w", script, target, err)
	}
	return nil
}

// EnsureTools makes sure every named binary exists in CacheBinDir, running the
// build script for target when one is missing. Several test packages may ask
// at once (go test runs packages in parallel), so the build runs under a file
// lock and the check is repeated once the lock is held: the second caller
// then finds the binaries the first one built instead of building them again.
// The lock is one for every target: targets overlap (test, demo and controlplane
// all build kube-apiserver), and two builds of one binary must not run at once.
func EnsureTools(target string, bins ...string) error {
	if missingTools(bins) == nil {
		return nil
	}
	if err := os.MkdirAll(CacheDir(), 0o755); err != nil {
		return err
	}
	unlock, err := lockFile(filepath.Join(CacheDir(), ".build.lock"))
	if err != nil {
		return err
	}
	defer unlock()
	missing := missingTools(bins)
	if missing == nil {
		return nil
	}
	fmt.Fprintf(os.Stderr, "harness: %v missing from %s; building %q with tests/tools/build.sh "+
		"(this takes minutes the first time, later runs reuse the cache)\n", missing, CacheBinDir(), target)
	if err := RunBuildScript(target); err != nil {
		return err
	}
	if missing := missingTools(bins); missing != nil {
		return fmt.Errorf("build.sh %s finished but %v are still missing from %s", target, missing, CacheBinDir())
	}
	return nil
}

func missingTools(bins []string) []string {
	var missing []string
	for _, b := range bins {
		if st, err := os.Stat(filepath.Join(CacheBinDir(), b)); err != nil || st.Mode()&0o111 == 0 {
			missing = append(missing, b)
		}
	}
	return missing
}

// lockFile takes an exclusive flock; the kernel drops it if we die, so a
// crashed build never wedges later runs.
func lockFile(path string) (unlock func(), err error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX)
		if !errors.Is(err, syscall.EINTR) {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return func() { f.Close() }, nil
}

// BuildProjectBinaries builds our own binaries (see ProjectBinaries) into
// outDir from the repository root. It always rebuilds: Go's build cache makes
// that cheap, and a stale plugin binary would silently test old code.
func BuildProjectBinaries(outDir string) error {
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return err
	}
	// One invocation builds all packages in parallel; with several packages,
	// "-o dir/" writes each binary into dir under its package name.
	args := append([]string{"build", "-o", filepath.Clean(outDir) + string(filepath.Separator)}, ProjectBinaries...)
	cmd := exec.Command("go", args...)
	cmd.Dir = RepoRoot()
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go build %v: %w", ProjectBinaries, err)
	}
	return nil
}
