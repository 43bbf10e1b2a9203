package harness

import (
	"errors"
	"fmt"
	"os"
	"sync"

	"github.com/vishvananda/netlink"
)

// Veth is a veth pair. Tests use one end as a throw-away macvlan/ipvlan
// parent (a stand-in for the node's uplink NIC) and move the other end into a
// namespace that plays the rest of the L2 segment.
type Veth struct {
	A, B string // interface names of the two ends

	mu        sync.Mutex
	nsA, nsB  *NetNS // where each end lives; nil = root namespace
	closeOnce sync.Once
	closeErr  error
}

// NewVethPair creates a veth pair in the root namespace with both ends up.
func NewVethPair(a, b string) (*Veth, error) { return NewVethPairIn(nil, a, b) }

// NewVethPairIn creates a veth pair inside ns (nil = root), both ends up.
func NewVethPairIn(ns *NetNS, a, b string) (*Veth, error) {
	v := &Veth{A: a, B: b, nsA: ns, nsB: ns}
	err := withHandle(pathOf(ns), func(h *netlink.Handle) error {
		veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: a}, PeerName: b}
		if err := h.LinkAdd(veth); err != nil {
			return err
		}
		for _, name := range []string{a, b} {
			link, err := h.LinkByName(name)
			if err == nil {
				err = h.LinkSetUp(link)
			}
			if err != nil {
				_ = h.LinkDel(veth)
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("veth %s/%s in %s: %w", a, b, nameOf(ns), err)
	}
	return v, nil
}

// MoveB moves end B into ns (nil = root) and brings it up there.
func (v *Veth) MoveB(ns *NetNS) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	if err := MoveLink(v.B, v.nsB, ns); err != nil {
		return err
	}
	v.nsB = ns
	return nil
}

// Close deletes the pair (deleting either end removes both). It tolerates
// the pair, or the namespace of an end, being gone already: deleting a
// namespace destroys the veth ends inside it.
func (v *Veth) Close() error {
	v.closeOnce.Do(func() {
		v.mu.Lock()
		defer v.mu.Unlock()
		ends := []struct {
			name string
			ns   *NetNS
		}{{v.A, v.nsA}, {v.B, v.nsB}}
		var errs []error
		for _, end := range ends {
			err := withHandle(pathOf(end.ns), func(h *netlink.Handle) error {
				link, err := h.LinkByName(end.name)
				if err != nil {
					return err
				}
				return h.LinkDel(link)
			})
			if err == nil {
				return // the peer went with it
			}
			if !isLinkNotFound(err) && !errors.Is(err, os.ErrNotExist) {
				errs = append(errs, fmt.Errorf("delete %s in %s: %w", end.name, nameOf(end.ns), err))
			}
		}
		v.closeErr = errors.Join(errs...)
	})
	return v.closeErr
}
