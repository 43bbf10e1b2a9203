package ipamplugin

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/underpool/underpool/rpc"
)

// confFields is what a refusal of LoadConf may name: a field of the network config, or
// the config itself when it is no JSON.
var confFields = []string{"network config is not valid JSON", "prevResult", "ipam.socket", "ipam.timeout", "ipam.ipv4Pools", "ipam.ipv6Pools", "logFile"}

// FuzzLoadConf: no network config panics the IPAM plugin's parser, every refusal names a
// field, and what is accepted keeps its node paths under their roots.
func FuzzLoadConf(f *testing.F) {
	for _, seed := range []string{
		`{"cniVersion":"1.1.0","name":"n","type":"macvlan","master":"eth1","ipam":{"type":"underpool-ipam","ipv4Pools":["a"],"ipv6Pools":["b"],"timeout":"5s"}}`,
		`{"cniVersion":"1.1.0","name":"n","type":"ipvlan","ipam":{"type":"underpool-ipam","socket":"/run/underpool/b.sock"},"logFile":"/var/log/underpool/x.log","logLevel":"debug","defaultRoute":false}`,
		`{"ipam":{"socket":"/run/underpool/../x.sock"},"logFile":"/etc/passwd"}`,
		`{"cniVersion":"1.1.0","prevResult":{"cniVersion":"1.1.0","interfaces":[{"name":"net1","sandbox":"/x"}],"ips":[{"address":"10.0.0.5/24","interface":0}]}}`,
		`{"cni.dev/valid-attachments":[{"containerID":"c","ifname":"net1"}],"runtimeConfig":{"ips":["10.0.0.5"],"mac":"02:00:00:00:00:01"}}`,
		`{`, `[]`, `null`, `{"ipam":{"ipv4Pools":["10.0.0.0/24"]}}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		// the node's settings are unset: the config alone decides, as on a default node
		t.Setenv(SocketEnv, "")
		t.Setenv(LogDirEnv, "")
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
			under("ipam.socket", conf.IPAM.Socket, SocketRoot)
		}
		under("logFile", conf.LogFile, DefaultLogDir)
	})
}
