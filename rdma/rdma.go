// Package rdma finds the RDMA device behind a pod's network device and, in exclusive
// netns mode, moves it into the pod's network namespace and back. This first version
// reports the kernel's RDMA netns mode and the devices present; the moves come with the
// network-side work.
package rdma

import (
	"errors"
	"fmt"
	"os"

	"github.com/vishvananda/netlink"
)

// SysClassInfiniband lists the RDMA devices the kernel knows.
const SysClassInfiniband = "/sys/class/infiniband"

// Mode is the kernel's RDMA network-namespace mode.
type Mode string

const (
	// Shared: RDMA devices are visible in every netns; nothing is moved.
	Shared Mode = "shared"
	// Exclusive: a device belongs to one netns and must be moved into the pod's.
	Exclusive Mode = "exclusive"
)

// ErrNoRDMA means this kernel has no RDMA devices (or no RDMA support at all).
var ErrNoRDMA = errors.New("no RDMA devices on this node (/sys/class/infiniband is empty or missing)")

// Devices lists the RDMA device names of this node.
func Devices() ([]string, error) {
	entries, err := os.ReadDir(SysClassInfiniband)
	if errors.Is(err, os.ErrNotExist) || (err == nil && len(entries) == 0) {
		return nil, ErrNoRDMA
	}
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names, nil
}

// SystemMode reads the kernel's RDMA netns mode.
func SystemMode() (Mode, error) {
	mode, err := netlink.RdmaSystemGetNetnsMode()
	if err != nil {
		return "", fmt.Errorf("reading the RDMA netns mode (rdma system): %w", err)
	}
	return Mode(mode), nil
}
