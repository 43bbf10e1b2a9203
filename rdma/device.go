package rdma

import "fmt"

// System is what the RDMA decisions need from the node. The real one (Kernel) uses
// rdmamap and netlink; tests use a fake, since most machines (this one too) have no RDMA.
type System interface {
	// Mode is the kernel's RDMA netns mode.
	Mode() (Mode, error)
	// DevicesForPCI lists the RDMA devices of a PCI function (a VF's deviceID).
	DevicesForPCI(pci string) []string
	// DeviceForNetdev names the RDMA device behind a network device.
	DeviceForNetdev(netdev string) (string, error)
	// Exists reports whether an RDMA device is visible from the node's netns.
	Exists(dev string) bool
	// ExistsIn reports whether an RDMA device is visible from the netns at path.
	ExistsIn(dev, path string) bool
	// Move puts an RDMA device into the netns at path (path "" = the node's own), looking
	// the device up in the netns it is in now (fromPath, "" = the node's).
	Move(dev, fromPath, toPath string) error
}

// Want says which device a pod attachment needs.
type Want struct {
	Mode     Mode   // what the network config expects
	DeviceID string // the VF's PCI address from the device plugin, preferred
	Netdev   string // else the node-side netdev (e.g. the macvlan parent for shared mode)
	Network  string // the CNI network attaching it, recorded for GC
}

// Find returns the one RDMA device behind want, with errors that say what is wrong:
// a mode that is not the kernel's, no device, two devices for one function.
func Find(sys System, want Want) (string, error) {
	mode, err := sys.Mode()
	if err != nil {
		return "", err
	}
	if mode != want.Mode {
		return "", fmt.Errorf("rdma.mode is %s but the kernel's RDMA netns mode is %s: set it with `rdma system set netns %s` or change rdma.mode", want.Mode, mode, want.Mode)
	}
	switch {
	case want.DeviceID != "":
		devs := sys.DevicesForPCI(want.DeviceID)
		switch len(devs) {
		case 0:
			return "", fmt.Errorf("no RDMA device for PCI function %s (deviceID): is the VF bound to its RDMA-capable driver?", want.DeviceID)
		case 1:
			return devs[0], nil
		default:
			return "", fmt.Errorf("PCI function %s has %d RDMA devices %v: underpool moves exactly one", want.DeviceID, len(devs), devs)
		}
	case want.Netdev != "":
		dev, err := sys.DeviceForNetdev(want.Netdev)
		if err != nil || dev == "" {
			return "", fmt.Errorf("no RDMA device behind netdev %s: %v", want.Netdev, err)
		}
		return dev, nil
	default:
		return "", fmt.Errorf("no deviceID (from the device plugin) and no netdev to find an RDMA device by")
	}
}
