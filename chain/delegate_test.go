package chain

import (
	"encoding/json"
	"net"
	"reflect"
	"strings"
	"testing"

	current "github.com/containernetworking/cni/pkg/types/100"
)

// The exact delegate config per delegate and mode: what the kernel here cannot run
// (ipvlan, sriov) is proved by this, and where it can by the e2e suite.
func TestDelegateConfExactly(t *testing.T) {
	cases := []struct {
		name, conf, want string
	}{
		{"macvlan bridge", `{"delegate":{"type":"macvlan","master":"eth1","mode":"bridge"}}`,
			`{"cniVersion":"1.1.0","name":"n","type":"macvlan","master":"eth1","mode":"bridge"}`},
		{"macvlan private", `{"delegate":{"type":"macvlan","master":"eth1","mode":"private","mtu":9000}}`,
			`{"cniVersion":"1.1.0","name":"n","type":"macvlan","master":"eth1","mode":"private","mtu":9000}`},
		{"macvlan vepa", `{"delegate":{"type":"macvlan","master":"eth1","mode":"vepa"}}`,
			`{"cniVersion":"1.1.0","name":"n","type":"macvlan","master":"eth1","mode":"vepa"}`},
		{"macvlan passthru with multus mac", `{"delegate":{"type":"macvlan","master":"eth1","mode":"passthru"},"runtimeConfig":{"mac":"0a:58:0a:fa:01:02"}}`,
			`{"cniVersion":"1.1.0","name":"n","type":"macvlan","master":"eth1","mode":"passthru","runtimeConfig":{"mac":"0a:58:0a:fa:01:02"}}`},
		{"ipvlan l2", `{"delegate":{"type":"ipvlan","master":"eth1","mode":"l2"}}`,
			`{"cniVersion":"1.1.0","name":"n","type":"ipvlan","master":"eth1","mode":"l2"}`},
		{"ipvlan l3", `{"delegate":{"type":"ipvlan","master":"eth1","mode":"l3"}}`,
			`{"cniVersion":"1.1.0","name":"n","type":"ipvlan","master":"eth1","mode":"l3"}`},
		{"ipvlan l3s", `{"delegate":{"type":"ipvlan","master":"eth1","mode":"l3s","ipam":{}}}`,
			`{"cniVersion":"1.1.0","name":"n","type":"ipvlan","master":"eth1","mode":"l3s"}`},
		{"sriov with the device plugin's VF from multus",
			`{"deviceID":"0000:3b:02.1","pciBusID":"0000:3b:02.1","delegate":{"type":"sriov","vlan":100,"spoofchk":"on"},"runtimeConfig":{"deviceID":"0000:3b:02.1","mac":"0a:58:0a:fa:01:02"}}`,
			`{"cniVersion":"1.1.0","name":"n","type":"sriov","vlan":100,"spoofchk":"on","deviceID":"0000:3b:02.1","pciBusID":"0000:3b:02.1","runtimeConfig":{"deviceID":"0000:3b:02.1","mac":"0a:58:0a:fa:01:02"}}`},
		{"host-device by name, with CNI args", `{"delegate":{"type":"host-device","device":"ens1f0v3"},"args":{"cni":{"labels":["a"]}}}`,
			`{"cniVersion":"1.1.0","name":"n","type":"host-device","device":"ens1f0v3","args":{"cni":{"labels":["a"]}}}`},
		{"the delegate's own deviceID wins", `{"deviceID":"0000:3b:02.1","delegate":{"type":"host-device","deviceID":"0000:3b:02.7"}}`,
			`{"cniVersion":"1.1.0","name":"n","type":"host-device","deviceID":"0000:3b:02.7"}`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var top map[string]any
			if err := json.Unmarshal([]byte(c.conf), &top); err != nil {
				t.Fatal(err)
			}
			top["cniVersion"], top["name"], top["type"] = "1.1.0", "n", "underpool"
			top["ipam"] = map[string]any{"ipv4Pools": []string{"p"}}
			raw, _ := json.Marshal(top)
			conf, err := LoadConf(raw)
			if err != nil {
				t.Fatal(err)
			}
			out, err := conf.DelegateConf()
			if err != nil {
				t.Fatal(err)
			}
			var got, want map[string]any
			_ = json.Unmarshal(out, &got)
			_ = json.Unmarshal([]byte(c.want), &want)
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("delegate config\n got %s\nwant %s", out, c.want)
			}
		})
	}
}

func TestDelegateModeIsChecked(t *testing.T) {
	for conf, field := range map[string]string{
		`{"delegate":{"type":"macvlan","master":"eth1","mode":"l2"},"ipam":{"ipv4Pools":["p"]}}`:    `delegate.mode "l2" is not one of macvlan's modes`,
		`{"delegate":{"type":"ipvlan","master":"eth1","mode":"bridge"},"ipam":{"ipv4Pools":["p"]}}`: `delegate.mode "bridge" is not one of ipvlan's modes`,
	} {
		if _, err := LoadConf([]byte(conf)); err == nil || !strings.Contains(err.Error(), field) {
			t.Errorf("want %q, got %v", field, err)
		}
	}
}

// TestIpvlanGetsTheAddressesAsItsPrevResult: ipvlan refuses to run without addresses
// (it runs IPAM itself unless its prevResult has some), so the meta-plugin hands it the
// allocation, in the network's CNI version; macvlan gets no prevResult.
func TestIpvlanGetsTheAddressesAsItsPrevResult(t *testing.T) {
	for _, c := range []struct {
		delegate, version string
		wantPrev          bool
	}{{"ipvlan", "1.1.0", true}, {"ipvlan", "0.4.0", true}, {"macvlan", "1.1.0", false}} {
		raw := `{"cniVersion":"` + c.version + `","name":"n","type":"underpool","delegate":{"type":"` + c.delegate +
			`","master":"eth1"},"ipam":{"ipv4Pools":["p"]}}`
		conf, err := LoadConf([]byte(raw))
		if err != nil {
			t.Fatal(err)
		}
		if conf.DelegateConfiguresAddresses() != c.wantPrev {
			t.Fatalf("%s: DelegateConfiguresAddresses = %v", c.delegate, !c.wantPrev)
		}
		if !c.wantPrev {
			continue
		}
		prev := &current.Result{CNIVersion: current.ImplementedSpecVersion, IPs: []*current.IPConfig{{
			Address: net.IPNet{IP: net.ParseIP("10.250.0.5").To4(), Mask: net.CIDRMask(24, 32)}, Gateway: net.ParseIP("10.250.0.1")}}}
		out, err := conf.DelegateConfWith(prev)
		if err != nil {
			t.Fatal(err)
		}
		var got struct {
			CNIVersion string `json:"cniVersion"`
			Prev       struct {
				CNIVersion string `json:"cniVersion"`
				IPs        []struct {
					Address string `json:"address"`
				} `json:"ips"`
			} `json:"prevResult"`
		}
		if err := json.Unmarshal(out, &got); err != nil {
			t.Fatal(err)
		}
		if got.Prev.CNIVersion != c.version || len(got.Prev.IPs) != 1 || got.Prev.IPs[0].Address != "10.250.0.5/24" {
			t.Fatalf("%s %s: delegate config %s", c.delegate, c.version, out)
		}
	}
}
