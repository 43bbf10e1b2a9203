// Package cniinstall puts the CNI plugins onto a node from inside the image: the ipamd
// DaemonSet's init container runs it with the host's CNI bin dir mounted. It is Go, not a
// script, so the image needs no shell and no base image.
package cniinstall

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// Plugins are the binaries a node's container runtime calls.
var Plugins = []string{"underpool", "underpool-ipam"}

// Options say where the plugins come from and go to.
type Options struct {
	From      string    // directory holding the plugin binaries (in the image: /opt/underpool/bin)
	CNIBinDir string    // the node's CNI bin dir as mounted in the container
	Plugins   []string  // names to install; empty means Plugins
	Out       io.Writer // progress, one line per file
}

// Install copies each plugin into CNIBinDir. A plugin already there with the same bytes is
// left alone, so a restarted init container does not touch files a runtime may be running;
// a changed one is written beside the old and renamed over it, so a runtime calling the
// plugin mid-upgrade runs either the old or the new binary, never half of one.
func Install(o Options) error {
	names := o.Plugins
	if len(names) == 0 {
		names = Plugins
	}
	if err := os.MkdirAll(o.CNIBinDir, 0o755); err != nil {
		return fmt.Errorf("--cni-bin-dir %s: %w", o.CNIBinDir, err)
	}
	for _, name := range names {
		src, err := os.ReadFile(filepath.Join(o.From, name))
		if err != nil {
			return fmt.Errorf("plugin %s not found in --from %s: %w", name, o.From, err)
		}
		dst := filepath.Join(o.CNIBinDir, name)
		if old, err := os.ReadFile(dst); err == nil && bytes.Equal(old, src) {
			fmt.Fprintf(o.Out, "unchanged %s\n", dst)
			continue
		}
		if err := writeAtomic(dst, src); err != nil {
			return err
		}
		fmt.Fprintf(o.Out, "installed %s\n", dst)
	}
	return nil
}

func writeAtomic(dst string, data []byte) error {
	tmp := filepath.Join(filepath.Dir(dst), "."+filepath.Base(dst)+".new")
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o755)
	if err != nil {
		return fmt.Errorf("writing %s: %w", tmp, err)
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync() // the rename must not publish a file whose bytes are still in flight
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp, 0o755) // umask may have narrowed OpenFile's mode
	}
	if err == nil {
		err = os.Rename(tmp, dst)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("installing %s: %w", dst, err)
	}
	return nil
}
