package cniinstall

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func write(t *testing.T, path, data string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(data), mode); err != nil {
		t.Fatal(err)
	}
}

func TestInstallCopiesExecutablesAndKeepsUnchangedFiles(t *testing.T) {
	from, dst := t.TempDir(), filepath.Join(t.TempDir(), "opt/cni/bin")
	for _, p := range Plugins {
		write(t, filepath.Join(from, p), "binary "+p, 0o700)
	}
	var out bytes.Buffer
	o := Options{From: from, CNIBinDir: dst, Out: &out}
	if err := Install(o); err != nil {
		t.Fatal(err)
	}
	for _, p := range Plugins {
		st, err := os.Stat(filepath.Join(dst, p))
		if err != nil || st.Mode().Perm() != 0o755 {
			t.Fatalf("%s: %v mode %v, want 0755", p, err, st)
		}
	}
	// a second run with the same bytes leaves the files as they are (same inode)
	before, _ := os.Stat(filepath.Join(dst, "underpool"))
	time.Sleep(10 * time.Millisecond)
	out.Reset()
	if err := Install(o); err != nil {
		t.Fatal(err)
	}
	after, _ := os.Stat(filepath.Join(dst, "underpool"))
	if !os.SameFile(before, after) || !strings.Contains(out.String(), "unchanged") {
		t.Fatalf("unchanged plugin was rewritten:\n%s", out.String())
	}
	// a new build replaces the file by rename, leaving no temporary behind
	write(t, filepath.Join(from, "underpool"), "binary v2", 0o755)
	if err := Install(o); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(filepath.Join(dst, "underpool"))
	ents, _ := os.ReadDir(dst)
	if string(got) != "binary v2" || len(ents) != len(Plugins) {
		t.Fatalf("upgrade: got %q, dir has %d entries", got, len(ents))
	}
}

func TestInstallNamesTheMissingPlugin(t *testing.T) {
	err := Install(Options{From: t.TempDir(), CNIBinDir: t.TempDir(), Out: &bytes.Buffer{}})
	if err == nil || !strings.Contains(err.Error(), "plugin underpool not found in --from") {
		t.Fatalf("want an error naming the plugin and --from, got %v", err)
	}
}

func TestCheckReportsMultusDelegatesAndRDMA(t *testing.T) {
	bin, sys := t.TempDir(), t.TempDir()
	write(t, filepath.Join(bin, "macvlan"), "x", 0o755)
	write(t, filepath.Join(bin, "ipvlan"), "x", 0o644) // not executable: not usable
	r := Check(bin, sys)
	var out bytes.Buffer
	r.Print(&out)
	if r.Multus || strings.Join(r.Missing, ",") != "ipvlan,host-device" || len(r.RDMA) != 0 {
		t.Fatalf("report %+v", r)
	}
	for _, want := range []string{"multus is not in", "delegate plugin ipvlan", "no RDMA devices"} {
		if !strings.Contains(out.String(), want) {
			t.Fatalf("report lacks %q:\n%s", want, out.String())
		}
	}
	write(t, filepath.Join(bin, "multus-shim"), "x", 0o755)
	write(t, filepath.Join(sys, "infiniband/mlx5_0/x"), "", 0o644)
	if r := Check(bin, sys); !r.Multus || strings.Join(r.RDMA, ",") != "mlx5_0" {
		t.Fatalf("report %+v", r)
	}
}
