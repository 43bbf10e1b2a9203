// Command underpool-install is the ipamd DaemonSet's init container: it copies the CNI
// plugins from the image into the node's CNI bin dir and reports the node's prerequisites.
// The image has no shell, so this is what replaces install.sh there.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/underpool/underpool/internal/buildinfo"
	"github.com/underpool/underpool/internal/cniinstall"
)

func main() {
	var o cniinstall.Options
	self, _ := os.Executable()
	flag.StringVar(&o.CNIBinDir, "cni-bin-dir", "/host/opt/cni/bin", "the node's CNI bin dir, as mounted in this container")
	flag.StringVar(&o.From, "from", filepath.Dir(self), "directory holding the plugin binaries")
	sysClass := flag.String("sys-class", "/sys/class", "sysfs class dir, where RDMA devices are listed")
	requireMultus := flag.Bool("require-multus", false, "fail (and let the kubelet retry) until multus is in --cni-bin-dir")
	socketDir := flag.String("socket-dir", "", "the node's ipamd socket directory (/run/underpool), as mounted in this container; empty: leave it alone")
	socketDirGroup := flag.Int("socket-dir-group", -1, "with --socket-dir: the group ipamd runs as; the directory goes to it (setgid, group-writable) so a non-root ipamd can make its socket there")
	showVersion := flag.Bool("version", false, "print the version and exit")
	flag.Parse()
	if *showVersion {
		fmt.Println(buildinfo.String("underpool-install"))
		return
	}
	o.Out = os.Stdout
	if (*socketDir == "") != (*socketDirGroup < 0) {
		fmt.Fprintln(os.Stderr, "underpool-install: --socket-dir and --socket-dir-group go together: set both (the directory and ipamd's gid) or neither")
		os.Exit(2)
	}
	if err := cniinstall.Install(o); err != nil {
		fmt.Fprintln(os.Stderr, "underpool-install:", err)
		os.Exit(1)
	}
	if *socketDir != "" {
		if err := cniinstall.PrepareSocketDir(*socketDir, *socketDirGroup, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, "underpool-install:", err)
			os.Exit(1)
		}
	}
	r := cniinstall.Check(o.CNIBinDir, *sysClass)
	r.Print(os.Stdout)
	if *requireMultus && !r.Multus {
		fmt.Fprintf(os.Stderr, "underpool-install: --require-multus: multus is not in %s yet; install multus, the kubelet retries this container\n", o.CNIBinDir)
		os.Exit(1)
	}
}
