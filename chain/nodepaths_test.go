package chain

import (
	"strings"
	"testing"

	"github.com/underpool/underpool/chain/ipamplugin"
)

// rdma.stateDir names a node path only under StateRoot, as ipam.socket and logFile do
// under theirs (ipamplugin's TestNodePathsConfined), which the meta-plugin confines too.
func TestNodePathsConfined(t *testing.T) {
	t.Setenv(ipamplugin.SocketEnv, "")
	t.Setenv(ipamplugin.LogDirEnv, "")
	for _, c := range []struct {
		name, conf string
		want       string // rdma.stateDir used
		refused    string // the field a refusal names; "" when accepted
	}{
		{"unset stays unset (the rdma default)", `"rdma":{"mode":"exclusive"}`, "", ""},
		{"under the root", `"rdma":{"stateDir":"/var/lib/cni/underpool/rdma2"}`, "/var/lib/cni/underpool/rdma2", ""},
		{"cleaned", `"rdma":{"stateDir":"/var/lib/cni/underpool/x/../rdma2"}`, "/var/lib/cni/underpool/rdma2", ""},
		{"a root directory", `"rdma":{"stateDir":"/etc"}`, "", "rdma.stateDir"},
		{"escapes by dot-dot", `"rdma":{"stateDir":"/var/lib/cni/underpool/../../../root/.ssh"}`, "", "rdma.stateDir"},
		{"the root itself", `"rdma":{"stateDir":"/var/lib/cni/underpool/"}`, "", "rdma.stateDir"},
		{"the IPAM plugin's socket rule holds here too", `"ipam":{"socket":"/run/containerd/containerd.sock"}`, "", "ipam.socket"},
		{"the IPAM plugin's log rule holds here too", `"logFile":"/etc/cron.d/x"`, "", "logFile"},
	} {
		t.Run(c.name, func(t *testing.T) {
			conf, err := LoadConf([]byte(`{"delegate":{"type":"macvlan"},` + c.conf + `}`))
			if c.refused != "" {
				if err == nil || !strings.Contains(err.Error(), c.refused) || !strings.Contains(err.Error(), "under ") {
					t.Fatalf("error %v, want a refusal naming %s and its root", err, c.refused)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if conf.RDMA.StateDir != c.want {
				t.Fatalf("rdma.stateDir %q, want %q", conf.RDMA.StateDir, c.want)
			}
		})
	}
}
