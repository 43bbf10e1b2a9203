package ipamplugin

import (
	"strings"
	"testing"

	"github.com/underpool/underpool/rpc"
)

func TestLoadConfErrorsNameTheField(t *testing.T) {
	for name, c := range map[string]struct{ conf, field string }{
		"not json":             {`{`, "not valid JSON"},
		"empty pool name":      {`{"ipam":{"ipv4Pools":[""]}}`, "ipam.ipv4Pools[0]"},
		"cidr instead of pool": {`{"ipam":{"ipv6Pools":["fd00:250::/64"]}}`, "ipam.ipv6Pools[0]"},
		"bad timeout":          {`{"ipam":{"ipv4Pools":["a"],"timeout":"soon"}}`, "ipam.timeout"},
		"bad prevResult":       {`{"cniVersion":"1.1.0","prevResult":{"ips":"x"}}`, "prevResult"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := LoadConf([]byte(c.conf))
			if err == nil || !strings.Contains(err.Error(), c.field) {
				t.Fatalf("error %v does not name %q", err, c.field)
			}
		})
	}
}

func TestLoadConfDefaults(t *testing.T) {
	t.Setenv(SocketEnv, "")
	t.Setenv(LogDirEnv, "")
	conf, err := LoadConf([]byte(`{"cniVersion":"1.1.0","name":"under","type":"macvlan","ipam":{"type":"underpool-ipam","ipv4Pools":["v4"]}}`))
	if err != nil {
		t.Fatal(err)
	}
	if conf.IPAM.Socket != rpc.DefaultSocket || conf.IPAM.timeout != DefaultTimeout || conf.LogFile != DefaultLogFile {
		t.Fatalf("defaults not applied: %+v, log file %s", conf.IPAM, conf.LogFile)
	}
	if !conf.WantDefaultRoute() {
		t.Fatal("defaultRoute should default to true")
	}
}

func TestSocketEnvWinsOverConf(t *testing.T) {
	conf := `{"ipam":{"socket":"/run/underpool/from-nad.sock"}}`
	socket := func(raw string) string {
		t.Helper()
		c, err := LoadConf([]byte(raw))
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
	for _, raw := range []string{conf, `{}`} {
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
