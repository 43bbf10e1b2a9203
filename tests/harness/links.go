package harness

import (
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// withHandle runs fn with a netlink handle whose sockets were opened inside
// the namespace at nsPath ("" = ours). The namespace switch lasts only for
// the socket creation and is undone by netlink itself, so no goroutine's
// thread is ever left in another namespace while fn runs.
func withHandle(nsPath string, fn func(h *netlink.Handle) error) error {
	var (
		h   *netlink.Handle
		err error
	)
	if nsPath == "" {
		h, err = netlink.NewHandle()
	} else {
		var target netns.NsHandle
		if target, err = netns.GetFromPath(nsPath); err != nil {
			return fmt.Errorf("open netns %s: %w", nsPath, err)
		}
		defer target.Close()
		h, err = netlink.NewHandleAt(target)
	}
	if err != nil {
		return fmt.Errorf("netlink handle for %q: %w", nsPath, err)
	}
	defer h.Close()
	return fn(h)
}

// isLinkNotFound reports whether err says a link does not exist.
// isLinkNotFound also covers a link that vanished between lookup and delete (its peer
// went first, or its namespace closed): ENODEV from the delete itself.
func isLinkNotFound(err error) bool {
	var notFound netlink.LinkNotFoundError
	return errors.As(err, &notFound) || errors.Is(err, syscall.ENODEV)
}

// LinkSetUp brings a link up inside ns (nil = root namespace).
func LinkSetUp(ns *NetNS, name string) error {
	return withHandle(pathOf(ns), func(h *netlink.Handle) error {
		link, err := h.LinkByName(name)
		if err != nil {
			return fmt.Errorf("%s in %s: %w", name, nameOf(ns), err)
		}
		return h.LinkSetUp(link)
	})
}

// AddAddr adds an address in CIDR form (10.250.1.1/24, fd00:250::1/64) to a
// link inside ns (nil = root namespace). IPv6 addresses skip duplicate
// address detection, so they are usable at once rather than after a delay.
func AddAddr(ns *NetNS, ifName, cidr string) error {
	addr, err := netlink.ParseAddr(cidr)
	if err != nil {
		return err
	}
	if addr.IP.To4() == nil {
		addr.Flags |= unix.IFA_F_NODAD
	}
	return withHandle(pathOf(ns), func(h *netlink.Handle) error {
		link, err := h.LinkByName(ifName)
		if err != nil {
			return fmt.Errorf("%s in %s: %w", ifName, nameOf(ns), err)
		}
		if err := h.AddrAdd(link, addr); err != nil {
			return fmt.Errorf("add %s to %s in %s: %w", cidr, ifName, nameOf(ns), err)
		}
		return nil
	})
}

// MoveLink moves link name from one namespace to another (nil = root) and
// brings it up there: a link loses its up state when it changes namespace.
func MoveLink(name string, from, to *NetNS) error {
	var fd netns.NsHandle
	var err error
	if to == nil {
		fd, err = netns.GetFromPid(os.Getpid()) // our own namespace, the one "root" means here
	} else {
		fd, err = netns.GetFromPath(to.Path())
	}
	if err != nil {
		return fmt.Errorf("open %s: %w", nameOf(to), err)
	}
	defer fd.Close()
	err = withHandle(pathOf(from), func(h *netlink.Handle) error {
		link, err := h.LinkByName(name)
		if err != nil {
			return fmt.Errorf("%s in %s: %w", name, nameOf(from), err)
		}
		return h.LinkSetNsFd(link, int(fd))
	})
	if err != nil {
		return fmt.Errorf("move %s from %s to %s: %w", name, nameOf(from), nameOf(to), err)
	}
	return LinkSetUp(to, name)
}

// Addrs lists the addresses of ifName inside the namespace at nsPath ("" =
// root). It retries when the kernel reports the dump as interrupted (a
// concurrent change), which netlink surfaces as ErrDumpInterrupted.
func Addrs(nsPath, ifName string) ([]netlink.Addr, error) {
	var addrs []netlink.Addr
	err := withHandle(nsPath, func(h *netlink.Handle) error {
		link, err := h.LinkByName(ifName)
		if err != nil {
			return fmt.Errorf("%s in %q: %w", ifName, nsPath, err)
		}
		for range 10 {
			addrs, err = h.AddrList(link, netlink.FAMILY_ALL)
			if !errors.Is(err, netlink.ErrDumpInterrupted) {
				break
			}
		}
		return err
	})
	return addrs, err
}

// GlobalAddrs lists the global unicast addresses (with their prefix) on ifName in the
// netns at nsPath; none when the link cannot be read (a sandbox being torn down).
func GlobalAddrs(nsPath, ifName string) []string {
	addrs, err := Addrs(nsPath, ifName)
	if err != nil {
		return nil
	}
	var out []string
	for _, a := range addrs {
		if a.IP.IsGlobalUnicast() {
			out = append(out, a.IPNet.String())
		}
	}
	return out
}

// HasAddr reports whether ifName inside nsPath carries ip.
func HasAddr(nsPath, ifName string, ip net.IP) (bool, error) {
	addrs, err := Addrs(nsPath, ifName)
	if err != nil {
		return false, err
	}
	for _, a := range addrs {
		if a.IP.Equal(ip) {
			return true, nil
		}
	}
	return false, nil
}

// deleteLinks deletes every link in the namespace at path but loopback.
func deleteLinks(path string) error {
	return withHandle(path, func(h *netlink.Handle) error {
		links, err := h.LinkList()
		if err != nil {
			return err
		}
		var errs []error
		for _, l := range links {
			if l.Attrs().Flags&net.FlagLoopback == 0 {
				if err := h.LinkDel(l); err != nil && !errors.Is(err, unix.ENODEV) {
					errs = append(errs, err)
				}
			}
		}
		return errors.Join(errs...)
	})
}
