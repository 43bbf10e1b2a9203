package chain

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/underpool/underpool/chain/ipamplugin"
	"github.com/underpool/underpool/rpc"
)

// confFields is what a refusal of LoadConf may name: a field of the network config, or
// the config itself when it is no JSON.
var confFields = []string{
	"network config is not valid JSON", "prevResult", "ipam.socket", "ipam.timeout", "ipam.ipv4Pools", "ipam.ipv6Pools",
	"routing.tableBase", "routing.rpFilter", "rdma.mode", "rdma.stateDir", "checks.timeout", "hostConnectivity.",
	"macPrefix", "logFile", "delegate", "vlan", "bond", "routes[",
}

// FuzzLoadConf: no network config panics the parser, every refusal names a field, and
// what is accepted keeps its node paths under their roots and renders a delegate config.
func FuzzLoadConf(f *testing.F) {
	for _, seed := range []string{
		`{"cniVersion":"1.1.0","name":"n","type":"underpool","delegate":{"type":"macvlan","master":"eth1","mode":"bridge"},"ipam":{"ipv4Pools":["a"],"ipv6Pools":["b"],"timeout":"5s"}}`,
		`{"cniVersion":"1.1.0","name":"n","type":"underpool","delegate":{"type":"sriov"},"rdma":{"mode":"exclusive","stateDir":"/var/lib/cni/underpool/r"},"macPrefix":"0a:58","logFile":"/var/log/underpool/x.log","logLevel":"debug"}`,
		`{"delegate":{"type":"ipvlan","mode":"l3"},"routing":{"tableBase":200,"rpFilter":-1,"policyRouting":false,"defaultRouteInterface":"net2"},"checks":{"timeout":"50ms","gateway":true}}`,
		`{"delegate":{"type":"macvlan"},"hostConnectivity":{"enabled":true,"nodeAddresses":["10.0.0.1"],"serviceCIDRs":["10.96.0.0/12"],"clusterCIDRs":["fd00::/48"]}}`,
		`{"delegate":{"type":"macvlan"},"ipam":{"socket":"/run/underpool/../x.sock"},"logFile":"/etc/passwd"}`,
		`{"cniVersion":"1.1.0","delegate":{"type":"macvlan"},"prevResult":{"cniVersion":"1.1.0","interfaces":[{"name":"net1","sandbox":"/x"}],"ips":[{"address":"10.0.0.5/24","interface":0}]}}`,
		`{"delegate":{"type":"macvlan"},"cni.dev/valid-attachments":[{"containerID":"c","ifname":"net1"}],"runtimeConfig":{"ips":["10.0.0.5"],"mac":"02:00:00:00:00:01"}}`,
		`{`, `[]`, `null`, `{"delegate":{"type":"macvlan","ipam":{"type":"host-local"}}}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		// the node's settings are unset: the config alone decides, as on a default node
		t.Setenv(ipamplugin.SocketEnv, "")
		t.Setenv(ipamplugin.LogDirEnv, "")
		conf, err := LoadConf(data)
		if err != nil {
			for _, field := range confFields {
				if strings.Contains(err.Error(), field) {
					return
				}
			}
			t.Fatalf("config %q: error %q names no field", data, err)
		}
		under := func(field, path, root string) {
			if rel, err := filepath.Rel(root, path); err != nil || rel == "." || strings.HasPrefix(rel, "..") {
				t.Fatalf("config %q: %s %q accepted outside %s", data, field, path, root)
			}
		}
		if conf.IPAM.Socket != rpc.DefaultSocket {
			under("ipam.socket", conf.IPAM.Socket, ipamplugin.SocketRoot)
		}
		under("logFile", conf.LogFile, ipamplugin.DefaultLogDir)
		if conf.RDMA.StateDir != "" {
			under("rdma.stateDir", conf.RDMA.StateDir, StateRoot)
		}
		raw, err := conf.DelegateConf()
		if err != nil {
			t.Fatalf("config %q: accepted, but its delegate config does not render: %v", data, err)
		}
		var d map[string]any
		if json.Unmarshal(raw, &d) != nil || d["type"] != conf.DelegateType() || d["ipam"] != nil {
			t.Fatalf("config %q: delegate config %s", data, raw)
		}
	})
}
