// Package install checks install.sh the way an operator runs it, into a temporary root.
package install

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/underpool/underpool/tests/harness"
)

func TestInstallIsIdempotentAndUninstalls(t *testing.T) {
	harness.RequireRoot(t) // the kernel link-type probe makes a throw-away netns
	bin := t.TempDir()
	if err := harness.BuildProjectBinaries(bin); err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	script := filepath.Join(harness.RepoRoot(), "install.sh")
	run := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(script, append([]string{"--prefix", root, "--from", bin, "--node-name", "n1"}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("install.sh %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	want := []string{"opt/cni/bin/underpool", "opt/cni/bin/underpool-ipam", "usr/local/bin/ipamd", "etc/systemd/system/underpool-ipamd.service"}
	for i := 0; i < 2; i++ { // a second run changes nothing and does not fail
		out := run()
		for _, f := range want {
			st, err := os.Stat(filepath.Join(root, f))
			if err != nil {
				t.Fatalf("run %d: %s missing: %v\n%s", i+1, f, err, out)
			}
			if strings.Contains(f, "bin/") && st.Mode().Perm()&0o111 == 0 {
				t.Fatalf("%s is not executable", f)
			}
		}
		if !strings.Contains(out, "multus is not in") || !strings.Contains(out, "kernel link type macvlan: available") ||
			!strings.Contains(out, "RDMA netns mode") {
			t.Fatalf("prerequisite report missing:\n%s", out)
		}
	}
	unit, _ := os.ReadFile(filepath.Join(root, "etc/systemd/system/underpool-ipamd.service"))
	if !strings.Contains(string(unit), "--node-name n1") {
		t.Fatalf("unit does not carry the node name:\n%s", unit)
	}
	run("--uninstall")
	for _, f := range want {
		if _, err := os.Stat(filepath.Join(root, f)); !os.IsNotExist(err) {
			t.Fatalf("%s left after --uninstall", f)
		}
	}
	if out, err := exec.Command(script, "--bogus").CombinedOutput(); err == nil || !strings.Contains(string(out), "unknown option --bogus") {
		t.Fatalf("bad flag accepted: %s", out)
	}
}

// --plugins-only is for nodes whose ipamd runs elsewhere (the DaemonSet's init container
// does the same with underpool-install): the plugins go into the
// node's CNI bin dir; ipamd and its unit do not (the DaemonSet runs ipamd).
func TestInstallPluginsOnly(t *testing.T) {
	harness.RequireRoot(t)
	bin := t.TempDir()
	if err := harness.BuildProjectBinaries(bin); err != nil {
		t.Fatal(err)
	}
	os.Remove(filepath.Join(bin, "ipamd")) // plugins-only needs no ipamd to copy
	root := t.TempDir()
	script := filepath.Join(harness.RepoRoot(), "install.sh")
	out, err := exec.Command(script, "--prefix", root, "--from", bin, "--no-systemd", "--plugins-only").CombinedOutput()
	if err != nil {
		t.Fatalf("install.sh --plugins-only: %v\n%s", err, out)
	}
	for _, f := range []string{"opt/cni/bin/underpool", "opt/cni/bin/underpool-ipam"} {
		if _, err := os.Stat(filepath.Join(root, f)); err != nil {
			t.Fatalf("%s missing: %v\n%s", f, err, out)
		}
	}
	for _, f := range []string{"usr/local/bin/ipamd", "etc/systemd/system/underpool-ipamd.service"} {
		if _, err := os.Stat(filepath.Join(root, f)); !os.IsNotExist(err) {
			t.Fatalf("%s installed with --plugins-only", f)
		}
	}
}
