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
	showVersion := flag.Bool("version", false, "print the version and exit")
	flag.Parse()
	if *showVersion {
		fmt.Println(buildinfo.String("underpool-install"))
		return
	}
	o.Out = os.Stdout
	if err := cniinstall.Install(o); err != nil {
		fmt.Fprintln(os.Stderr, "underpool-install:", err)
		os.Exit(1)
	}
	r := cniinstall.Check(o.CNIBinDir, *sysClass)
	r.Print(os.Stdout)
	if *requireMultus && !r.Multus {
		fmt.Fprintf(os.Stderr, "underpool-install: --require-multus: multus is not in %s yet; install multus, the kubelet retries this container\n", o.CNIBinDir)
		os.Exit(1)
	}
}
