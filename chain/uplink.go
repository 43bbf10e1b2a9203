package chain

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/underpool/underpool/netplan"
)

// The uplink is the node's link a macvlan or ipvlan delegate hangs the pod's link off:
// its configured master, or a bond of slaves (bond), with the attachment's 802.1q VLAN on
// top when its pools or the network name one (<master>.<vlan>). ADD makes what is missing
// before the delegate runs; what ADD made is removed by the DEL of the last attachment on
// it. The decisions are here, pure; the kernel work is package underlay's (uplinkstate.go
// and uplinkadd.go join them).

// MaxVlan is the highest 802.1q VLAN ID (4095 is reserved).
const MaxVlan = 4094

// maxIfName is the kernel's limit on an interface name (IFNAMSIZ less the NUL).
const maxIfName = 15

// masterDelegates hang the pod's link off a master in the node's netns: the uplink is
// theirs to be given. sriov tags its VF itself (its config's vlan); other delegates cannot
// carry a VLAN.
var masterDelegates = map[string]bool{"macvlan": true, "ipvlan": true}

// checkUplink validates the network's vlan and bond against its delegate.
func checkUplink(c *NetConf) error {
	if c.Vlan < 0 || c.Vlan > MaxVlan {
		return fmt.Errorf("vlan %d must be between 1 and %d (0 or absent: the pools' vlan decides, untagged when they name none)", c.Vlan, MaxVlan)
	}
	if c.Bond == nil {
		return nil
	}
	if !masterDelegates[c.DelegateType()] {
		return fmt.Errorf("bond is set but delegate.type is %q: only macvlan and ipvlan hang off a master the bond can be; remove bond or change the delegate", c.DelegateType())
	}
	if err := c.Bond.load(); err != nil {
		return err
	}
	if m, _ := c.Delegate["master"].(string); m != "" && m != c.Bond.Name {
		return fmt.Errorf("delegate.master %q differs from bond.name %q: with a bond, the bond is the master; leave delegate.master out or set it to %q", m, c.Bond.Name, c.Bond.Name)
	}
	// every verb of the delegate names the bond as its master, as if the config did
	c.Delegate["master"] = c.Bond.Name
	return nil
}

// baseMaster is the link under the attachment's VLAN: the delegate's master, the bond
// when there is one (empty: the delegate picks one itself, and no VLAN can go on it).
func (c *NetConf) baseMaster() string {
	m, _ := c.Delegate["master"].(string)
	return m
}

// withUplink has the delegate's config name master as its master (empty: as written) and
// an sriov delegate tag its VF with sriovVlan (0: as written).
func (c *NetConf) withUplink(master string, sriovVlan int) {
	c.uplinkMaster, c.sriovVlan = master, sriovVlan
}

// attachmentVlan is the VLAN the pod's link goes on: the one its pools name (a pool's 0
// names none), which must be one VLAN for all of them and the network's vlan when that is
// set; else the network's vlan; 0: untagged. The error names the pools and the VLANs.
func attachmentVlan(network int, addrs []netplan.Address) (int, error) {
	byVlan := map[int][]string{}
	for _, a := range addrs {
		if a.Vlan != 0 && !slices.Contains(byVlan[int(a.Vlan)], a.Pool) {
			byVlan[int(a.Vlan)] = append(byVlan[int(a.Vlan)], a.Pool)
		}
	}
	if len(byVlan) > 1 {
		return 0, fmt.Errorf("the attachment's pools are on different VLANs (%s), and one link carries one VLAN: give the pools the same vlan, or attach them through separate networks", describeVlans(byVlan))
	}
	for vlan, pools := range byVlan {
		if network != 0 && vlan != network {
			return 0, fmt.Errorf("pool %s has vlan %d but the network config's vlan is %d: make them equal, or leave one out", strings.Join(pools, ", "), vlan, network)
		}
		return vlan, nil
	}
	return network, nil
}

// describeVlans reads "pool a, b: VLAN 100; pool c: VLAN 200", in VLAN order.
func describeVlans(byVlan map[int][]string) string {
	vlans := make([]int, 0, len(byVlan))
	for v := range byVlan {
		vlans = append(vlans, v)
	}
	sort.Ints(vlans)
	parts := make([]string, 0, len(vlans))
	for _, v := range vlans {
		parts = append(parts, fmt.Sprintf("pool %s: VLAN %d", strings.Join(byVlan[v], ", "), v))
	}
	return strings.Join(parts, "; ")
}

// VlanLinkName is the VLAN interface ADD makes on master: <master>.<vlan>, the name
// Spiderpool's ifacer and most distributions' network scripts give it. A name past the
// kernel's 15 characters cannot be made: the operator names one.
func VlanLinkName(master string, vlan int) (string, error) {
	name := fmt.Sprintf("%s.%d", master, vlan)
	if len(name) > maxIfName {
		return "", fmt.Errorf("the VLAN interface %s would be longer than the kernel's %d characters: create VLAN %d on %s yourself under a shorter name (ip link add link %s name vlan%d type vlan id %d); ADD then uses it as is",
			name, maxIfName, vlan, master, master, vlan, vlan)
	}
	return name, nil
}

// uplinkPlan is what ADD makes sure of before the delegate runs: a bond (nil: none), then
// VLAN Vlan on Base (0: none). Master is the delegate's master then, the VLAN interface's
// expected name when there is a VLAN.
type uplinkPlan struct {
	Bond *BondConf
	Base string
	Vlan int
	// VlanName is <base>.<vlan>; empty when too long (VlanNameErr says why): an
	// operator's VLAN interface under another name may still serve.
	VlanName    string
	VlanNameErr error
	// SriovVlan is the VLAN an sriov delegate tags its VF with (its config's vlan).
	SriovVlan int
}

// planUplink decides the attachment's uplink from the config and the allocation. A plan
// with nothing to do (no bond, no VLAN) leaves the delegate's config as written.
func planUplink(c *NetConf, addrs []netplan.Address) (uplinkPlan, error) {
	vlan, err := attachmentVlan(c.Vlan, addrs)
	if err != nil {
		return uplinkPlan{}, err
	}
	p := uplinkPlan{Bond: c.Bond, Base: c.baseMaster()}
	if vlan == 0 {
		return p, nil
	}
	switch t := c.DelegateType(); {
	case t == "sriov":
		if own, set := delegateVlan(c.Delegate); set && own != vlan {
			return uplinkPlan{}, fmt.Errorf("delegate.vlan %d differs from VLAN %d of the attachment's pools or network: make them equal, or leave delegate.vlan out (underpool then sets it)", own, vlan)
		}
		p.SriovVlan = vlan
		return p, nil
	case !masterDelegates[t]:
		return uplinkPlan{}, fmt.Errorf("the attachment is on VLAN %d (its pools' or the network's vlan) but delegate %s cannot put a link on a VLAN: use macvlan, ipvlan or sriov, or drop the vlan", vlan, t)
	case p.Base == "":
		return uplinkPlan{}, fmt.Errorf("the attachment is on VLAN %d but delegate.master is empty: name the NIC the VLAN interface goes on", vlan)
	}
	p.Vlan = vlan
	p.VlanName, p.VlanNameErr = VlanLinkName(p.Base, vlan)
	return p, nil
}

// delegateVlan is an sriov delegate's own vlan field, when set.
func delegateVlan(d map[string]any) (int, bool) {
	v, ok := d["vlan"].(float64)
	return int(v), ok
}

// empty: nothing to make, the delegate's config stays as written.
func (p uplinkPlan) empty() bool { return p.Bond == nil && p.Vlan == 0 }
