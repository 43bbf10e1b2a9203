package chain

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/underpool/underpool/netplan"
	"github.com/underpool/underpool/underlay"
)

func addr(pool string, vlan int32) netplan.Address { return netplan.Address{Pool: pool, Vlan: vlan} }

func TestAttachmentVlanIsThePoolsOrTheNetworksAndNamesBothWhenTheyDiffer(t *testing.T) {
	for _, c := range []struct {
		name    string
		network int
		addrs   []netplan.Address
		want    int
		refused []string // what the error names; nil: accepted
	}{
		{"untagged, as before", 0, []netplan.Address{addr("a", 0)}, 0, nil},
		{"the pool's", 0, []netplan.Address{addr("a", 100)}, 100, nil},
		{"dual stack pools agree", 0, []netplan.Address{addr("v4", 100), addr("v6", 100)}, 100, nil},
		{"a pool naming none follows the other", 0, []netplan.Address{addr("v4", 100), addr("v6", 0)}, 100, nil},
		{"the network's", 200, []netplan.Address{addr("a", 0)}, 200, nil},
		{"the network's with no address", 200, nil, 200, nil},
		{"pool and network agree", 100, []netplan.Address{addr("a", 100)}, 100, nil},
		{"pools differ", 0, []netplan.Address{addr("v4", 100), addr("v6", 200)}, 0, []string{"pool v4: VLAN 100", "pool v6: VLAN 200"}},
		{"pool differs from the network", 200, []netplan.Address{addr("a", 100)}, 0, []string{"pool a has vlan 100", "network config's vlan is 200"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := attachmentVlan(c.network, c.addrs)
			if c.refused != nil {
				if err == nil {
					t.Fatalf("VLAN %d accepted, want a refusal naming %v", got, c.refused)
				}
				for _, s := range c.refused {
					if !strings.Contains(err.Error(), s) {
						t.Fatalf("error %q does not name %q", err, s)
					}
				}
				return
			}
			if err != nil || got != c.want {
				t.Fatalf("VLAN %d (%v), want %d", got, err, c.want)
			}
		})
	}
}

func TestVlanLinkNameIsMasterDotVlanWithinTheKernelsLimit(t *testing.T) {
	if n, err := VlanLinkName("eth1", 100); err != nil || n != "eth1.100" {
		t.Fatalf("got %q, %v", n, err)
	}
	if n, err := VlanLinkName("enp129s0f0", 4094); err != nil || n != "enp129s0f0.4094" {
		t.Fatalf("a 15-character name: got %q, %v", n, err)
	}
	_, err := VlanLinkName("enp129s0f0np0", 100)
	if err == nil || !strings.Contains(err.Error(), "ip link add link enp129s0f0np0 name vlan100 type vlan id 100") {
		t.Fatalf("a name past 15 characters: want the fix spelled out, got %v", err)
	}
}

func loadConfOf(t *testing.T, fields string) (*NetConf, error) {
	t.Helper()
	return LoadConf([]byte(`{"cniVersion":"1.1.0","name":"n","ipam":{"ipv4Pools":["a"]},` + fields + `}`))
}

func TestUplinkConfigErrorsNameTheFieldAndTheFix(t *testing.T) {
	for _, c := range []struct{ name, fields, want string }{
		{"vlan too high", `"vlan":4095,"delegate":{"type":"macvlan","master":"eth1"}`, "vlan 4095 must be between 1 and 4094"},
		{"vlan negative", `"vlan":-1,"delegate":{"type":"macvlan","master":"eth1"}`, "vlan -1"},
		{"bond on sriov", `"bond":{"name":"bond0","slaves":["eth1"]},"delegate":{"type":"sriov"}`, "only macvlan and ipvlan"},
		{"bond without name", `"bond":{"slaves":["eth1"]},"delegate":{"type":"macvlan"}`, "bond.name"},
		{"bond name too long", `"bond":{"name":"bond0123456789ab","slaves":["eth1"]},"delegate":{"type":"macvlan"}`, "bond.name"},
		{"bond without slaves", `"bond":{"name":"bond0"},"delegate":{"type":"macvlan"}`, "bond.slaves is empty"},
		{"slave twice", `"bond":{"name":"bond0","slaves":["eth1","eth1"]},"delegate":{"type":"macvlan"}`, "bond.slaves[1] eth1 is named twice"},
		{"the bond its own slave", `"bond":{"name":"bond0","slaves":["bond0"]},"delegate":{"type":"macvlan"}`, "bond.slaves[0] is the bond bond0 itself"},
		{"unknown mode", `"bond":{"name":"bond0","mode":"hot-spare","slaves":["eth1"]},"delegate":{"type":"macvlan"}`, "bond.mode \"hot-spare\""},
		{"mode number out of range", `"bond":{"name":"bond0","mode":7,"slaves":["eth1"]},"delegate":{"type":"macvlan"}`, "bond.mode \"7\""},
		{"mode neither", `"bond":{"name":"bond0","mode":true,"slaves":["eth1"]},"delegate":{"type":"macvlan"}`, "bond.mode"},
		{"master other than the bond", `"bond":{"name":"bond0","slaves":["eth1"]},"delegate":{"type":"macvlan","master":"eth0"}`, "delegate.master \"eth0\" differs from bond.name \"bond0\""},
		{"unknown option", `"bond":{"name":"bond0","slaves":["eth1"],"options":"miimon=100;carrier=1"},"delegate":{"type":"macvlan"}`, "bond.options carrier: unknown option"},
		{"option not key=value", `"bond":{"name":"bond0","slaves":["eth1"],"options":"miimon"},"delegate":{"type":"macvlan"}`, "is not key=value"},
		{"option not a number", `"bond":{"name":"bond0","slaves":["eth1"],"options":"miimon=fast"},"delegate":{"type":"macvlan"}`, "bond.options miimon"},
		{"primary not a slave", `"bond":{"name":"bond0","slaves":["eth1"],"options":"primary=eth2"},"delegate":{"type":"macvlan"}`, "bond.options primary: \"eth2\" is not one of bond.slaves"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := loadConfOf(t, c.fields)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want one naming %q", err, c.want)
			}
		})
	}
}

// ifacer's bond fields carry over: the mode by number or name, its options format.
func TestBondConfigReadsIfacersModesAndOptions(t *testing.T) {
	conf, err := loadConfOf(t, `"bond":{"name":"bond0","mode":1,"slaves":["eth1","eth2"],
		"options":"miimon=100; updelay=200;downdelay=300;min_links=1;lacp_rate=1;xmit_hash_policy=layer3+4;primary=eth2"},
		"delegate":{"type":"macvlan","mode":"bridge"}`)
	if err != nil {
		t.Fatal(err)
	}
	want := underlay.BondSpec{Name: "bond0", Mode: "active-backup", Slaves: []string{"eth1", "eth2"}, Miimon: 100, UpDelay: 200,
		DownDelay: 300, MinLinks: 1, LacpRate: "fast", XmitHashPolicy: "layer3+4", Primary: "eth2"}
	if got, _ := json.Marshal(conf.Bond.spec); string(got) != string(mustMarshal(t, want)) {
		t.Fatalf("bond spec %s, want %s", got, mustMarshal(t, want))
	}
	if conf.baseMaster() != "bond0" {
		t.Fatalf("the delegate's master is %q, want the bond", conf.baseMaster())
	}
	conf, err = loadConfOf(t, `"bond":{"name":"bond1","mode":"802.3ad","slaves":["eth1"]},"delegate":{"type":"ipvlan","master":"bond1"}`)
	if err != nil || conf.Bond.spec.Mode != "802.3ad" {
		t.Fatalf("mode by name: %+v, %v", conf.Bond, err)
	}
	conf, err = loadConfOf(t, `"bond":{"name":"bond1","slaves":["eth1"]},"delegate":{"type":"ipvlan"}`)
	if err != nil || conf.Bond.spec.Mode != "balance-rr" {
		t.Fatalf("no mode: want the kernel's balance-rr, got %+v, %v", conf.Bond, err)
	}
}

func mustMarshal(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestPlanUplinkPutsMacvlanAndIpvlanOnTheVlanAndTagsAnSriovVF(t *testing.T) {
	plan := func(fields string, addrs ...netplan.Address) (uplinkPlan, error) {
		conf, err := loadConfOf(t, fields)
		if err != nil {
			t.Fatal(err)
		}
		return planUplink(conf, addrs)
	}
	p, err := plan(`"delegate":{"type":"macvlan","master":"eth1"}`, addr("a", 0))
	if err != nil || !p.empty() {
		t.Fatalf("untagged: want nothing to do, got %+v, %v", p, err)
	}
	p, err = plan(`"delegate":{"type":"ipvlan","master":"eth1"}`, addr("a", 100))
	if err != nil || p.empty() || p.Vlan != 100 || p.VlanName != "eth1.100" || p.Base != "eth1" {
		t.Fatalf("ipvlan on VLAN 100: got %+v, %v", p, err)
	}
	if keys := p.lockKeys(); strings.Join(keys, ",") != "eth1.100" {
		t.Fatalf("lock keys %v", keys)
	}
	p, err = plan(`"vlan":300,"bond":{"name":"bond0","slaves":["eth1","eth2"]},"delegate":{"type":"macvlan"}`, addr("a", 0))
	if err != nil || p.Vlan != 300 || p.VlanName != "bond0.300" || p.Bond == nil {
		t.Fatalf("bond with the network's VLAN: got %+v, %v", p, err)
	}
	if keys := p.lockKeys(); strings.Join(keys, ",") != "bond0,bond0.300" {
		t.Fatalf("lock keys %v, want the bond's first", keys)
	}
	p, err = plan(`"bond":{"name":"bond0","slaves":["eth1"]},"delegate":{"type":"macvlan"}`)
	if err != nil || p.empty() || p.Vlan != 0 {
		t.Fatalf("bond, untagged: got %+v, %v", p, err)
	}
	p, err = plan(`"delegate":{"type":"macvlan","master":"enp129s0f0np0"}`, addr("a", 100))
	if err != nil || p.VlanName != "" || p.VlanNameErr == nil {
		t.Fatalf("a name too long is no error yet (an operator's VLAN interface may serve): got %+v, %v", p, err)
	}
	p, err = plan(`"delegate":{"type":"sriov"}`, addr("a", 100))
	if err != nil || !p.empty() || p.SriovVlan != 100 {
		t.Fatalf("sriov: want the VF tagged, got %+v, %v", p, err)
	}
	for _, c := range []struct{ fields, want string }{
		{`"delegate":{"type":"sriov","vlan":200}`, "delegate.vlan 200 differs from VLAN 100"},
		{`"delegate":{"type":"host-device","device":"eth3"}`, "delegate host-device cannot put a link on a VLAN"},
		{`"delegate":{"type":"macvlan"}`, "delegate.master is empty"},
	} {
		if _, err := plan(c.fields, addr("a", 100)); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one naming %q", c.fields, err, c.want)
		}
	}
}

// The delegate gets the uplink's master over its own, and an sriov VF its VLAN unless its
// config tags it already.
func TestDelegateConfNamesTheUplinkAsMaster(t *testing.T) {
	conf, err := loadConfOf(t, `"delegate":{"type":"macvlan","master":"eth1"}`)
	if err != nil {
		t.Fatal(err)
	}
	conf.withUplink("eth1.100", 0)
	var d map[string]any
	raw, _ := conf.DelegateConf()
	_ = json.Unmarshal(raw, &d)
	if d["master"] != "eth1.100" {
		t.Fatalf("delegate master %v, want eth1.100: %s", d["master"], raw)
	}
	conf, _ = loadConfOf(t, `"delegate":{"type":"sriov"}`)
	conf.withUplink("", 100)
	raw, _ = conf.DelegateConf()
	d = nil
	_ = json.Unmarshal(raw, &d)
	if d["vlan"] != float64(100) || d["master"] != nil {
		t.Fatalf("sriov delegate: want vlan 100 and no master, got %s", raw)
	}
}
