package chain

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func TestLoadConfErrorsNameTheField(t *testing.T) {
	cases := []struct {
		name, conf, field string
		needDelegate      bool
	}{
		{"not json", `{`, "not valid JSON", true},
		{"empty pool name", `{"delegate":{"type":"macvlan"},"ipam":{"ipv4Pools":[""]}}`, "ipam.ipv4Pools[0]", true},
		{"cidr instead of pool", `{"delegate":{"type":"macvlan"},"ipam":{"ipv6Pools":["fd00:250::/64"]}}`, "ipam.ipv6Pools[0]", true},
		{"bad timeout", `{"delegate":{"type":"macvlan"},"ipam":{"ipv4Pools":["a"],"timeout":"soon"}}`, "ipam.timeout", true},
		{"no delegate", `{"ipam":{"ipv4Pools":["a"]}}`, "delegate is missing", true},
		{"delegate without type", `{"delegate":{"master":"eth1"},"ipam":{"ipv4Pools":["a"]}}`, "delegate.type", true},
		{"delegate with ipam", `{"delegate":{"type":"macvlan","ipam":{"type":"host-local"}},"ipam":{"ipv4Pools":["a"]}}`, "delegate.ipam", true},
		{"delegate is itself", `{"delegate":{"type":"underpool"},"ipam":{"ipv4Pools":["a"]}}`, "delegate.type", true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := LoadConf([]byte(c.conf), c.needDelegate)
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
		"runtimeConfig":{"mac":"02:00:00:00:00:01"}}`), true)
	if err != nil {
		t.Fatal(err)
	}
	if conf.IPAM.Socket != "/run/underpool/ipamd.sock" || conf.IPAM.timeout != DefaultTimeout || conf.LogFile != DefaultLogFile {
		t.Fatalf("defaults not applied: %+v", conf.IPAM)
	}
	if !conf.wantDefaultRoute() {
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

func TestSocketEnvWinsOverConf(t *testing.T) {
	conf := `{"delegate":{"type":"macvlan"},"ipam":{"socket":"/run/underpool/from-nad.sock"}}`
	socket := func(raw string) string {
		t.Helper()
		c, err := LoadConf([]byte(raw), true)
		if err != nil {
			t.Fatal(err)
		}
		return c.IPAM.Socket
	}
	t.Setenv(SocketEnv, "")
	if got := socket(conf); got != "/run/underpool/from-nad.sock" {
		t.Fatalf("without %s: socket %q, want the config's", SocketEnv, got)
	}
	t.Setenv(SocketEnv, "/run/node-b/ipamd.sock")
	for _, raw := range []string{conf, `{"delegate":{"type":"macvlan"}}`} {
		if got := socket(raw); got != "/run/node-b/ipamd.sock" {
			t.Fatalf("with %s set: socket %q for %s, want the node's", SocketEnv, got, raw)
		}
	}
}

func TestPodFromArgs(t *testing.T) {
	pod, err := podFromArgs("IgnoreUnknown=1;K8S_POD_NAMESPACE=ns1;K8S_POD_NAME=web-0;K8S_POD_UID=u-1;FOO=bar")
	if err != nil || pod.Namespace != "ns1" || pod.Name != "web-0" || pod.UID != "u-1" {
		t.Fatalf("got %+v %v", pod, err)
	}
	if _, err := podFromArgs("garbage"); err == nil || !strings.Contains(err.Error(), "CNI_ARGS") {
		t.Fatalf("bad CNI_ARGS accepted: %v", err)
	}
}

func TestHostConnectivityConf(t *testing.T) {
	for field, conf := range map[string]string{
		"hostConnectivity.nodeAddresses[0]": `{"nodeAddresses":["node-a"]}`,
		"hostConnectivity.serviceCIDRs[1]":  `{"serviceCIDRs":["10.96.0.0/12","10.96.0.0"]}`,
		"hostConnectivity.clusterCIDRs[0]":  `{"clusterCIDRs":["x"]}`,
	} {
		_, err := LoadConf([]byte(`{"delegate":{"type":"macvlan"},"hostConnectivity":`+conf+`}`), true)
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
		conf, err := LoadConf([]byte(`{"delegate":{"type":"macvlan"},"ipam":{"ipv4Pools":["a"]}`+checks+`}`), true)
		if err != nil {
			t.Fatal(err)
		}
		if got, gw := conf.Checks.conflictWindow(), conf.Checks.gatewayWait(); got != c.conflict || gw != c.gateway {
			t.Fatalf("checks.timeout %q: conflict window %s, gateway wait %s; want %s, %s", c.set, got, gw, c.conflict, c.gateway)
		}
	}
}
