package chain

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/underpool/underpool/underlay"
)

// BondConf asks for a bond of slaves as the delegate's master, made when the node has no
// link of that name. The fields mean what Spiderpool's ifacer takes (its interfaces are
// slaves here), so its NADs carry over.
type BondConf struct {
	// Name is the bond's interface name.
	Name string `json:"name"`
	// Mode is the bonding mode, by name ("active-backup") or by the kernel's number (1) as
	// ifacer takes it; default balance-rr (0), the kernel's.
	Mode BondMode `json:"mode,omitempty"`
	// Slaves are the NICs the bond is made of: present on the node, in no other bond or
	// bridge, without addresses.
	Slaves []string `json:"slaves"`
	// Options are ifacer's "key=value;key=value": miimon, updelay, downdelay, min_links,
	// lacp_rate, xmit_hash_policy, primary.
	Options string `json:"options,omitempty"`

	spec underlay.BondSpec
}

// BondMode is a bonding mode by name or number in the config, by name once loaded.
type BondMode string

// UnmarshalJSON takes "active-backup" or 1.
func (m *BondMode) UnmarshalJSON(b []byte) error {
	var n json.Number
	if err := json.Unmarshal(b, &n); err == nil {
		*m = BondMode(n.String())
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("bond.mode must be a mode's name (\"active-backup\") or number (1): %v", err)
	}
	*m = BondMode(s)
	return nil
}

// bondModes are the kernel's modes, at their numbers.
var bondModes = []string{"balance-rr", "active-backup", "balance-xor", "broadcast", "802.3ad", "balance-tlb", "balance-alb"}

// bondOptionNames are the options ifacer's format may carry here.
var bondOptionNames = []string{"downdelay", "lacp_rate", "miimon", "min_links", "primary", "updelay", "xmit_hash_policy"}

// load checks the bond's fields and settles the spec the kernel side makes it from.
func (b *BondConf) load() error {
	if b.Name == "" || len(b.Name) > maxIfName || strings.ContainsAny(b.Name, "/: \t") {
		return fmt.Errorf("bond.name %q must be an interface name of 1 to %d characters (no '/', ':' or blanks), such as \"bond0\"", b.Name, maxIfName)
	}
	mode, err := b.mode()
	if err != nil {
		return err
	}
	if len(b.Slaves) == 0 {
		return fmt.Errorf("bond.slaves is empty: name the NICs the bond %s is made of, such as [\"eth1\",\"eth2\"]", b.Name)
	}
	for i, s := range b.Slaves {
		switch {
		case s == "" || len(s) > maxIfName:
			return fmt.Errorf("bond.slaves[%d] %q must be an interface name of 1 to %d characters", i, s, maxIfName)
		case s == b.Name:
			return fmt.Errorf("bond.slaves[%d] is the bond %s itself: name the NICs it is made of", i, s)
		case slices.Index(b.Slaves, s) != i:
			return fmt.Errorf("bond.slaves[%d] %s is named twice: name each NIC once", i, s)
		}
	}
	b.spec = underlay.BondSpec{Name: b.Name, Mode: mode, Slaves: b.Slaves}
	return b.parseOptions()
}

// mode is the bonding mode's name.
func (b *BondConf) mode() (string, error) {
	m := string(b.Mode)
	if m == "" {
		return bondModes[0], nil
	}
	if n, err := strconv.Atoi(m); err == nil && n >= 0 && n < len(bondModes) {
		return bondModes[n], nil
	}
	if slices.Contains(bondModes, m) {
		return m, nil
	}
	return "", fmt.Errorf("bond.mode %q is not a bonding mode: use one of %s, or its number 0 to %d", m, strings.Join(bondModes, ", "), len(bondModes)-1)
}

// parseOptions reads ifacer's "k1=v1;k2=v2" into the spec. Unlike ifacer, which skips what
// it cannot read, an option it cannot apply fails: a bond made without the miimon its
// operator asked for fails over never.
func (b *BondConf) parseOptions() error {
	for _, kv := range strings.Split(b.Options, ";") {
		if strings.TrimSpace(kv) == "" {
			continue
		}
		k, v, ok := strings.Cut(strings.TrimSpace(kv), "=")
		if !ok || v == "" {
			return fmt.Errorf("bond.options %q: %q is not key=value; write them as \"miimon=100;updelay=200\"", b.Options, kv)
		}
		if err := b.setOption(k, v); err != nil {
			return fmt.Errorf("bond.options %s: %v", k, err)
		}
	}
	return nil
}

func (b *BondConf) setOption(k, v string) error {
	ints := map[string]*int{"miimon": &b.spec.Miimon, "updelay": &b.spec.UpDelay, "downdelay": &b.spec.DownDelay, "min_links": &b.spec.MinLinks}
	if p, ok := ints[k]; ok {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return fmt.Errorf("%q must be a whole number of milliseconds or links, 0 or more", v)
		}
		*p = n
		return nil
	}
	choices := map[string][]string{
		"lacp_rate":        {"slow", "fast"},
		"xmit_hash_policy": {"layer2", "layer3+4", "layer2+3", "encap2+3", "encap3+4", "vlan+srcmac"},
	}
	switch k {
	case "lacp_rate", "xmit_hash_policy":
		name, err := choice(v, choices[k])
		if k == "lacp_rate" {
			b.spec.LacpRate = name
		} else {
			b.spec.XmitHashPolicy = name
		}
		return err
	case "primary":
		if !slices.Contains(b.Slaves, v) {
			return fmt.Errorf("%q is not one of bond.slaves %v", v, b.Slaves)
		}
		b.spec.Primary = v
		return nil
	}
	return fmt.Errorf("unknown option: use %s", strings.Join(bondOptionNames, ", "))
}

// choice is v by name, or by its number in names as the kernel counts them.
func choice(v string, names []string) (string, error) {
	if n, err := strconv.Atoi(v); err == nil && n >= 0 && n < len(names) {
		return names[n], nil
	}
	if slices.Contains(names, v) {
		return v, nil
	}
	return "", fmt.Errorf("%q must be one of %s (or its number)", v, strings.Join(names, ", "))
}
