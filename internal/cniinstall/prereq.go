package cniinstall

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// Delegates are the containernetworking plugins underpool's networks delegate to.
var Delegates = []string{"macvlan", "ipvlan", "host-device"}

// Report describes what else the node needs, in the init container's log: a node may get
// multus or RDMA later, so only a missing multus can be made fatal (RequireMultus).
type Report struct {
	Multus    bool     // multus (thin) or multus-shim (thick) is in the CNI bin dir
	Missing   []string // delegate plugins not in the CNI bin dir
	RDMA      []string // RDMA devices the kernel shows
	cniBinDir string
}

// Check looks at the node's CNI bin dir and sysfs (sysClass is /sys/class in production).
func Check(cniBinDir, sysClass string) Report {
	r := Report{cniBinDir: cniBinDir}
	r.Multus = executable(filepath.Join(cniBinDir, "multus")) || executable(filepath.Join(cniBinDir, "multus-shim"))
	for _, d := range Delegates {
		if !executable(filepath.Join(cniBinDir, d)) {
			r.Missing = append(r.Missing, d)
		}
	}
	if ents, err := os.ReadDir(filepath.Join(sysClass, "infiniband")); err == nil {
		for _, e := range ents {
			r.RDMA = append(r.RDMA, e.Name())
		}
	}
	return r
}

// Print writes the report, one line per finding, warnings prefixed so they stand out.
func (r Report) Print(w io.Writer) {
	if !r.Multus {
		fmt.Fprintf(w, "WARNING: multus is not in %s: underpool is meant to be called by multus for NetworkAttachmentDefinitions\n", r.cniBinDir)
	}
	for _, d := range r.Missing {
		fmt.Fprintf(w, "WARNING: delegate plugin %s is not in %s (containernetworking/plugins): networks using it fail on this node\n", d, r.cniBinDir)
	}
	if len(r.RDMA) == 0 {
		fmt.Fprintln(w, "no RDMA devices on this node (RDMA networks cannot be used here)")
	} else {
		fmt.Fprintf(w, "RDMA devices: %s\n", strings.Join(r.RDMA, " "))
	}
}

func executable(path string) bool {
	st, err := os.Stat(path)
	return err == nil && st.Mode().IsRegular() && st.Mode().Perm()&0o111 != 0
}
