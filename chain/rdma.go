package chain

import (
	"fmt"

	"github.com/underpool/underpool/rdma"
)

// RDMAConf asks for the RDMA device behind the delegate's device.
type RDMAConf struct {
	// Mode is the kernel's RDMA netns mode the network expects: "exclusive" moves the
	// device into the pod, "shared" only checks it exists; empty: no RDMA.
	Mode string `json:"mode,omitempty"`
	// StateDir records which device each attachment holds (default /var/lib/cni/underpool/rdma);
	// it must lie under StateRoot.
	StateDir string `json:"stateDir,omitempty"`
}

// newAttacher is swapped in tests; the real one talks to the kernel.
var newAttacher = func(c RDMAConf) rdma.Attacher {
	dir := c.StateDir
	if dir == "" {
		dir = rdma.DefaultStateDir
	}
	return rdma.Attacher{Sys: rdma.Kernel{}, State: rdma.State{Dir: dir}}
}

func checkRDMA(c RDMAConf) error {
	switch rdma.Mode(c.Mode) {
	case "", rdma.Exclusive, rdma.Shared:
		return nil
	}
	return fmt.Errorf("rdma.mode %q must be \"exclusive\", \"shared\" or empty", c.Mode)
}

// rdmaWant finds the device by the VF's PCI address (multus deviceID) or the delegate's
// parent netdev.
func (c *NetConf) rdmaWant() rdma.Want {
	w := rdma.Want{Mode: rdma.Mode(c.RDMA.Mode), DeviceID: c.DeviceID, Network: c.Name}
	if id, _ := c.RuntimeConfig["deviceID"].(string); w.DeviceID == "" {
		w.DeviceID = id
	}
	w.Netdev, _ = c.Delegate["master"].(string)
	return w
}
