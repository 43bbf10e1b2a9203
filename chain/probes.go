package chain

import (
	"fmt"
	"net"
	"net/netip"
	"strings"

	"github.com/underpool/underpool/ipamd/rpc"
	"github.com/underpool/underpool/netplan"
	"github.com/underpool/underpool/underlay"
)

// The underlay checks of ADD: conflict and gateway probes, announcements. They run in
// the pod netns, on the delegate's link.

// conflictError says which addresses another host answered for; ADD releases them to
// ipamd as conflicts so they are kept out of allocation and the retry gets others.
type conflictError struct {
	ifName    string
	conflicts []rpc.Conflict
}

func (e *conflictError) Error() string {
	var parts []string
	for _, c := range e.conflicts {
		mac := c.MAC
		if mac == "" {
			mac = "a host that did not give its MAC"
		}
		parts = append(parts, fmt.Sprintf("%s is already used by %s", c.IP, mac))
	}
	return fmt.Sprintf("IP conflict on %s's network: %s; the address is released and kept out of allocation for a while, a retry gets another",
		e.ifName, strings.Join(parts, ", "))
}

// prepareLink gives the link its IP-derived MAC (when macPrefix is set and the runtime
// asked for no MAC of its own) and brings it up so probes can be sent. It returns the
// link's MAC for the result.
func prepareLink(conf *NetConf, ifName string, alloc netplan.Allocation) (string, error) {
	var mac net.HardwareAddr
	if _, asked := conf.RuntimeConfig["mac"]; conf.MACPrefix != "" && !asked && len(alloc.Addresses) > 0 {
		var err error
		if mac, err = netplan.MACFromIP(conf.MACPrefix, alloc.PreferIPv4()); err != nil {
			return "", err
		}
	}
	got, err := underlay.PrepareLink(ifName, mac, conf.Checks.ipConflict())
	if err != nil {
		return "", err
	}
	return got.String(), nil
}

// probeIPv4Conflicts asks the segment about each IPv4 address before it is set.
func probeIPv4Conflicts(conf *NetConf, ifName string, addrs []netplan.Address) error {
	if !conf.Checks.ipConflict() {
		return nil
	}
	var found []rpc.Conflict
	for _, a := range addrs {
		if !a.Prefix.Addr().Is4() {
			continue
		}
		mac, err := underlay.ProbeIPv4(ifName, a.Prefix.Addr(), conf.Checks.timeout)
		if err != nil {
			return fmt.Errorf("probing %s for conflicts: %w", a.Prefix.Addr(), err)
		}
		if mac != nil {
			found = append(found, rpc.Conflict{IP: a.Prefix.Addr().String(), MAC: mac.String()})
		}
	}
	if len(found) > 0 {
		return &conflictError{ifName: ifName, conflicts: found}
	}
	return nil
}

// ipv6Conflicts turns the kernel's duplicate address detection verdict into a conflict
// error, asking who holds each duplicate for the message. nil: no duplicate.
func ipv6Conflicts(conf *NetConf, ifName string, addrs []netplan.Address) error {
	var want []netip.Addr
	for _, a := range addrs {
		if a.Prefix.Addr().Is6() {
			want = append(want, a.Prefix.Addr())
		}
	}
	if len(want) == 0 || !conf.Checks.ipConflict() {
		return nil
	}
	dups, err := underlay.DADFailed(ifName, want)
	if err != nil || len(dups) == 0 {
		return err
	}
	found := make([]rpc.Conflict, 0, len(dups))
	for _, d := range dups {
		c := rpc.Conflict{IP: d.String()}
		if mac, err := underlay.ResolveIPv6(ifName, d, conf.Checks.timeout, settleTimeout); err == nil && len(mac) > 0 {
			c.MAC = mac.String()
		}
		found = append(found, c)
	}
	return &conflictError{ifName: ifName, conflicts: found}
}

// checkGateways fails when a pool's gateway does not answer from the pod's address.
func checkGateways(conf *NetConf, ifName string, addrs []netplan.Address) error {
	if !conf.Checks.gateway() {
		return nil
	}
	for _, a := range addrs {
		if !a.Gateway.IsValid() {
			continue
		}
		var mac net.HardwareAddr
		var err error
		if a.Gateway.Is4() {
			mac, err = underlay.ResolveIPv4(ifName, a.Prefix.Addr(), a.Gateway, conf.Checks.timeout)
		} else {
			mac, err = underlay.ResolveIPv6From(ifName, a.Prefix.Addr(), a.Gateway, conf.Checks.timeout)
		}
		if err != nil {
			return fmt.Errorf("checking gateway %s from %s: %w", a.Gateway, a.Prefix.Addr(), err)
		}
		if mac == nil {
			return fmt.Errorf("gateway %s does not answer on %s (from %s within %s): check the pool's gateway and the underlay (VLAN, parent NIC), or set checks.gateway false",
				a.Gateway, ifName, a.Prefix.Addr(), conf.Checks.timeout)
		}
	}
	return nil
}

// announce tells the segment the addresses are here now. Failing to announce does not
// fail ADD: the neighbours learn the address at the first exchange anyway.
func announce(conf *NetConf, ifName string, addrs []netplan.Address) []error {
	if !conf.Checks.announce() {
		return nil
	}
	var errs []error
	for _, a := range addrs {
		var err error
		if a.Prefix.Addr().Is4() {
			err = underlay.AnnounceIPv4(ifName, a.Prefix.Addr())
		} else {
			err = underlay.AnnounceIPv6(ifName, a.Prefix.Addr())
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("announcing %s: %w", a.Prefix.Addr(), err))
		}
	}
	return errs
}
