package chain

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/underpool/underpool/chain/ipamplugin"
)

func TestLoadConfErrorsNameTheField(t *testing.T) {
	cases := []struct {
		name, conf, field string
	}{
		{"not json", `{`, "not valid JSON"},
		{"empty pool name", `{"delegate":{"type":"macvlan"},"ipam":{"ipv4Pools":[""]}}`, "ipam.ipv4Pools[0]"},
		{"cidr instead of pool", `{"delegate":{"type":"macvlan"},"ipam":{"ipv6Pools":["fd00:250::/64"]}}`, "ipam.ipv6Pools[0]"},
		{"bad timeout", `{"delegate":{"type":"macvlan"},"ipam":{"ipv4Pools":["a"],"timeout":"soon"}}`, "ipam.timeout"},
		{"no delegate", `{"ipam":{"ipv4Pools":["a"]}}`, "delegate is missing"},
		{"delegate without type", `{"delegate":{"master":"eth1"},"ipam":{"ipv4Pools":["a"]}}`, "delegate.type"},
		{"delegate with ipam", `{"delegate":{"type":"macvlan","ipam":{"type":"host-local"}},"ipam":{"ipv4Pools":["a"]}}`, "delegate.ipam"},
		{"delegate is itself", `{"delegate":{"type":"underpool"},"ipam":{"ipv4Pools":["a"]}}`, "delegate.type"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := LoadConf([]byte(c.conf))
			if err == nil || !strings.Contains(err.Error(), c.field) {
				t.Fatalf("error %v does not name %q", err, c.field)
			}
		})
	}
}

func TestLoadConfDefaultsAndDelegateConf(t *testing.T) {
	conf, err := LoadConf([]byte(`{"cniVersion":"1.1.0","name":"under","type":"underpool",
		"delegate":{"type":"macvlan","master":"eth1","mode":"bridge","ipam":{}},
		"ipam":{"ipv4Pools":["v4a","v4b"],"ipv6Pools":["v6"]},
		"runtimeConfig":{"mac":"02:00:00:00:00:01"}}`))
	if err != nil {
		t.Fatal(err)
	}
	if conf.IPAM.Socket != "/run/underpool/ipamd.sock" || conf.LogFile != ipamplugin.DefaultLogFile {
		t.Fatalf("defaults not applied: %+v", conf.IPAM)
	}
	if !conf.WantDefaultRoute() {
		t.Fatal("defaultRoute should default to true")
	}
	raw, err := conf.DelegateConf()
	if err != nil {
		t.Fatal(err)
	}
	var d map[string]any
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatal(err)
	}
	if d["type"] != "macvlan" || d["name"] != "under" || d["cniVersion"] != "1.1.0" || d["master"] != "eth1" {
		t.Fatalf("delegate conf lost fields: %s", raw)
	}
	if _, has := d["ipam"]; has {
		t.Fatalf("delegate conf keeps an ipam: %s", raw)
	}
	if rc, _ := d["runtimeConfig"].(map[string]any); rc["mac"] != "02:00:00:00:00:01" {
		t.Fatalf("runtimeConfig not passed to the delegate: %s", raw)
	}
}

func TestHostConnectivityConf(t *testing.T) {
	for field, conf := range map[string]string{
		"hostConnectivity.nodeAddresses[0]": `{"nodeAddresses":["node-a"]}`,
		"hostConnectivity.serviceCIDRs[1]":  `{"serviceCIDRs":["10.96.0.0/12","10.96.0.0"]}`,
		"hostConnectivity.clusterCIDRs[0]":  `{"clusterCIDRs":["x"]}`,
	} {
		_, err := LoadConf([]byte(`{"delegate":{"type":"macvlan"},"hostConnectivity":` + conf + `}`))
		if err == nil || !strings.Contains(err.Error(), field) {
			t.Errorf("error %v does not name %s", err, field)
		}
	}
	on, off := true, false
	cases := []struct {
		enabled  *bool
		delegate string
		holds    bool
		want     bool
	}{
		{nil, "macvlan", true, true},   // underlay-only macvlan pod
		{nil, "ipvlan", true, true},    // underlay-only ipvlan pod
		{nil, "macvlan", false, false}, // an overlay eth0 or an earlier NIC holds the default
		{nil, "sriov", true, false},    // a VF reaches its PF through the NIC's switch
		{nil, "host-device", true, false},
		{&on, "sriov", false, true},
		{&off, "macvlan", true, false},
	}
	for _, c := range cases {
		if got := (HostConnectivityConf{Enabled: c.enabled}).wanted(c.delegate, c.holds); got != c.want {
			t.Errorf("enabled=%v delegate=%s holdsDefault=%v: wanted %v, want %v", c.enabled, c.delegate, c.holds, got, c.want)
		}
	}
	if n := hostVethName("0123456789abcdef0123456789abcdef", "net1"); len(n) > 15 || n != hostVethName("0123456789abcdef0123456789abcdef", "net1") {
		t.Errorf("host veth name %q must be stable and at most 15 characters", n)
	}
	if n := podVethName("averyverylongifname"); len(n) > 15 {
		t.Errorf("pod veth name %q is longer than 15 characters", n)
	}
}

// The conflict probe's window and the gateway check's wait default apart (a missed
// gateway answer fails ADD, a conflict window sits in every ADD); checks.timeout, when
// set, is both.
func TestChecksTimeoutDefaults(t *testing.T) {
	for _, c := range []struct {
		set               string
		conflict, gateway time.Duration
	}{
		{"", DefaultConflictWindow, DefaultCheckTimeout},
		{"250ms", 250 * time.Millisecond, 250 * time.Millisecond},
	} {
		var checks string
		if c.set != "" {
			checks = `,"checks":{"timeout":"` + c.set + `"}`
		}
		conf, err := LoadConf([]byte(`{"delegate":{"type":"macvlan"},"ipam":{"ipv4Pools":["a"]}` + checks + `}`))
		if err != nil {
			t.Fatal(err)
		}
		if got, gw := conf.Checks.conflictWindow(), conf.Checks.gatewayWait(); got != c.conflict || gw != c.gateway {
			t.Fatalf("checks.timeout %q: conflict window %s, gateway wait %s; want %s, %s", c.set, got, gw, c.conflict, c.gateway)
		}
	}
}
