package harness

import (
	"fmt"

	"github.com/vishvananda/netlink"
)

// NewBridge creates a bridge inside ns (nil = root namespace) and brings it up. Tests
// join the links of several simulated nodes and peers on it, an L2 segment as a switch
// makes one: with STP off (the kernel's default) a port forwards as soon as it is up.
func NewBridge(ns *NetNS, name string) error {
	return withHandle(pathOf(ns), func(h *netlink.Handle) error {
		br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: name}}
		if err := h.LinkAdd(br); err != nil {
			return fmt.Errorf("bridge %s in %s: %w", name, nameOf(ns), err)
		}
		if err := h.LinkSetUp(br); err != nil {
			return fmt.Errorf("bridge %s in %s: up: %w", name, nameOf(ns), err)
		}
		return nil
	})
}

// SetMaster enslaves link to master (a bridge), both inside ns (nil = root namespace).
func SetMaster(ns *NetNS, link, master string) error {
	return withHandle(pathOf(ns), func(h *netlink.Handle) error {
		l, err := h.LinkByName(link)
		if err != nil {
			return fmt.Errorf("%s in %s: %w", link, nameOf(ns), err)
		}
		m, err := h.LinkByName(master)
		if err != nil {
			return fmt.Errorf("%s in %s: %w", master, nameOf(ns), err)
		}
		if err := h.LinkSetMaster(l, m); err != nil {
			return fmt.Errorf("%s into %s in %s: %w", link, master, nameOf(ns), err)
		}
		return nil
	})
}
