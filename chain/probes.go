package chain

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/containernetworking/plugins/pkg/ns"

	"github.com/underpool/underpool/netplan"
	"github.com/underpool/underpool/rpc"
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
	return fmt.Sprintf("IP conflict on %s's network: %s; the address is released to ipamd, which keeps it out of allocation for a while (unless that host answers for many of the pool's addresses: then it is taken for a proxy or spoofer), and a retry gets another",
		e.ifName, strings.Join(parts, ", "))
}

// prepareLink gives the link its IP-derived MAC (when macPrefix is set and the runtime
// asked for no MAC of its own), sizes IPv6 duplicate address detection to the conflict
// window when the pod gets IPv6 (off without ipConflict) and brings the link up so probes can be sent. It
// returns the link's MAC for the result.
func prepareLink(conf *NetConf, ifName string, alloc netplan.Allocation) (string, error) {
	var mac net.HardwareAddr
	if _, asked := conf.RuntimeConfig["mac"]; conf.MACPrefix != "" && !asked && len(alloc.Addresses) > 0 {
		var err error
		if mac, err = netplan.MACFromIP(conf.MACPrefix, alloc.PreferIPv4()); err != nil {
			return "", err
		}
	}
	// IPv4 only: the link-local address's DAD is nobody's wait, left as the kernel runs it
	dad := time.Duration(0)
	if !conf.Checks.ipConflict() {
		dad = -1
	} else if alloc.HasFamily(false) {
		dad = conf.Checks.conflictWindow()
	}
	got, err := underlay.PrepareLink(ifName, mac, dad)
	if err != nil {
		return "", err
	}
	return got.String(), nil
}

// ipv4Probe is the ARP conflict probe of one pod interface: started as soon as the
// link is up, it listens while ADD sets the addresses and routes, and is waited for
// before anything outside the pod hears of the addresses. Its socket then sends the
// announcement too: each packet socket costs an RCU grace period to close.
type ipv4Probe struct {
	ifName string
	probe  *underlay.ConflictProbe
	waited bool
}

// probesFromMaster are the delegates whose pod link cannot hear the answer to a probe: an
// ipvlan shares its master's MAC and a probe is sent from 0.0.0.0, so the answer names no
// address of the pod and ipvlan hands it to the master. The probe listens there, in the
// node's netns, where every frame the master receives is seen.
var probesFromMaster = map[string]bool{"ipvlan": true}

// startIPv4Probe asks the segment about each IPv4 address before it is set. nil (a
// valid probe that finds nothing) when the check is off or there is no IPv4 address.
// It runs in the pod's netns; host is the node's, where the master is.
func startIPv4Probe(conf *NetConf, ifName string, addrs []netplan.Address, host ns.NetNS) (*ipv4Probe, error) {
	ips := ipv4Of(addrs)
	if !conf.Checks.ipConflict() || len(ips) == 0 {
		return &ipv4Probe{ifName: ifName}, nil
	}
	var p *underlay.ConflictProbe
	var err error
	if probesFromMaster[conf.DelegateType()] {
		p, err = probeFromMaster(ifName, host, ips, conf.Checks.conflictWindow())
	} else {
		p, err = underlay.StartPodConflictProbe(ifName, ips, conf.Checks.conflictWindow())
	}
	if err != nil {
		return nil, fmt.Errorf("probing %v for conflicts: %w", ips, err)
	}
	return &ipv4Probe{ifName: ifName, probe: p}, nil
}

// probeFromMaster starts the probe on the master of the pod's ifName, in host.
func probeFromMaster(ifName string, host ns.NetNS, ips []netip.Addr, window time.Duration) (*underlay.ConflictProbe, error) {
	parent, err := underlay.ParentIndex(ifName)
	if err != nil {
		return nil, err
	}
	var p *underlay.ConflictProbe
	err = host.Do(func(ns.NetNS) error {
		master, err := underlay.LinkNameByIndex(parent)
		if err != nil {
			return fmt.Errorf("the master of %s: %w", ifName, err)
		}
		p, err = underlay.StartConflictProbe(master, ips, window)
		return err
	})
	return p, err
}

// wait returns a conflictError when another host answered within the window.
func (p *ipv4Probe) wait(log *zap.Logger) error {
	if p.probe == nil || p.waited {
		return nil
	}
	p.waited = true
	c, err := p.probe.Wait()
	if err != nil {
		return fmt.Errorf("probing for conflicts: %w", err)
	}
	if c == nil {
		return nil
	}
	log.Warn("another host answered for the address", zap.Stringer("ip", c.IP),
		zap.Stringer("mac", c.MAC), zap.Duration("after", c.After))
	return &conflictError{ifName: p.ifName, conflicts: []rpc.Conflict{{IP: c.IP.String(), MAC: c.MAC.String()}}}
}

// announce sends the IPv4 announcements on the probe's socket, or on one of their own
// when no probe ran.
func (p *ipv4Probe) announce(ips []netip.Addr) error {
	if p.probe != nil {
		return p.probe.Announce(ips)
	}
	for _, ip := range ips {
		if err := underlay.AnnounceIPv4(p.ifName, ip); err != nil {
			return fmt.Errorf("announcing %s: %w", ip, err)
		}
	}
	return nil
}

func (p *ipv4Probe) close() {
	if p.probe != nil {
		p.probe.Close()
	}
}

func ipv4Of(addrs []netplan.Address) []netip.Addr {
	var ips []netip.Addr
	for _, a := range addrs {
		if a.Prefix.Addr().Is4() {
			ips = append(ips, a.Prefix.Addr())
		}
	}
	return ips
}

// awaitIPv6 waits for the kernel's duplicate address detection (sized by prepareLink)
// to finish on the link, and turns a duplicate into a conflict error, asking who holds
// it for the message.
func awaitIPv6(conf *NetConf, ifName string, addrs []netplan.Address) error {
	var want []netip.Addr
	for _, a := range addrs {
		if a.Prefix.Addr().Is6() {
			want = append(want, a.Prefix.Addr())
		}
	}
	if len(want) == 0 {
		// IPv4 only: waiting would only wait out the link-local address's DAD for an
		// address the pod does not use
		return nil
	}
	dups, err := underlay.AwaitDAD(ifName, want, settleTimeout)
	if err != nil || len(dups) == 0 {
		return err
	}
	found := make([]rpc.Conflict, 0, len(dups))
	for _, d := range dups {
		c := rpc.Conflict{IP: d.String()}
		if mac, err := underlay.ResolveIPv6(ifName, d, conf.Checks.conflictWindow(), settleTimeout); err == nil && len(mac) > 0 {
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
			mac, err = underlay.ResolveIPv4(ifName, a.Prefix.Addr(), a.Gateway, conf.Checks.gatewayWait())
		} else {
			mac, err = underlay.ResolveIPv6From(ifName, a.Prefix.Addr(), a.Gateway, conf.Checks.gatewayWait())
		}
		if err != nil {
			return fmt.Errorf("checking gateway %s from %s: %w", a.Gateway, a.Prefix.Addr(), err)
		}
		if mac == nil {
			return fmt.Errorf("gateway %s does not answer on %s (from %s within %s): check the pool's gateway and the underlay (VLAN, parent NIC), or set checks.gateway false",
				a.Gateway, ifName, a.Prefix.Addr(), conf.Checks.gatewayWait())
		}
	}
	return nil
}

// announce tells the segment the addresses are here now. Failing to announce does not
// fail ADD: the neighbours learn the address at the first exchange anyway.
func announce(conf *NetConf, ifName string, addrs []netplan.Address, v4 *ipv4Probe) []error {
	if !conf.Checks.announce() {
		return nil
	}
	var errs []error
	if ips := ipv4Of(addrs); len(ips) > 0 {
		if err := v4.announce(ips); err != nil {
			errs = append(errs, err)
		}
	}
	for _, a := range addrs {
		if a.Prefix.Addr().Is6() {
			if err := underlay.AnnounceIPv6(ifName, a.Prefix.Addr()); err != nil {
				errs = append(errs, fmt.Errorf("announcing %s: %w", a.Prefix.Addr(), err))
			}
		}
	}
	return errs
}
