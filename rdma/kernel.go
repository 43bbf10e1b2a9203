package rdma

import (
	"fmt"
	"os"

	"github.com/Mellanox/rdmamap"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// Kernel is the real System. Every netlink handle is opened inside the netns it acts on
// (a device in a pod netns is invisible to a handle of the node's), and every namespace
// and handle it opens is closed before returning: one leaked fd per pod pins each pod's
// netns forever.
type Kernel struct{}

var _ System = Kernel{}

func (Kernel) Mode() (Mode, error) { return SystemMode() }

func (Kernel) DevicesForPCI(pci string) []string { return rdmamap.GetRdmaDevicesForPcidev(pci) }

func (Kernel) DeviceForNetdev(netdev string) (string, error) {
	return rdmamap.GetRdmaDeviceForNetdevice(netdev)
}

func (Kernel) Exists(dev string) bool {
	_, err := netlink.RdmaLinkByName(dev)
	return err == nil
}

func (Kernel) ExistsIn(dev, path string) bool {
	target, err := openNetns(path)
	if err != nil {
		return false
	}
	defer target.Close()
	h, err := netlink.NewHandleAt(target)
	if err != nil {
		return false
	}
	defer h.Close()
	_, err = h.RdmaLinkByName(dev)
	return err == nil
}

func (Kernel) Move(dev, fromPath, toPath string) error {
	to, err := openNetns(toPath)
	if err != nil {
		return err
	}
	defer to.Close()
	from, err := openNetns(fromPath)
	if err != nil {
		return err
	}
	defer from.Close()
	h, err := netlink.NewHandleAt(from)
	if err != nil {
		return fmt.Errorf("netlink handle in %s: %w", nameOr(fromPath), err)
	}
	defer h.Close()
	link, err := h.RdmaLinkByName(dev)
	if err != nil {
		return fmt.Errorf("RDMA device %s in %s: %w", dev, nameOr(fromPath), err)
	}
	return h.RdmaLinkSetNsFd(link, uint32(to))
}

// openNetns opens the netns at path, or the node's own ("" = this process's).
func openNetns(path string) (netns.NsHandle, error) {
	if path == "" {
		return netns.GetFromPid(os.Getpid())
	}
	h, err := netns.GetFromPath(path)
	if err != nil {
		return h, fmt.Errorf("opening netns %s: %w", path, err)
	}
	return h, nil
}

func nameOr(path string) string {
	if path == "" {
		return "the node's netns"
	}
	return path
}
