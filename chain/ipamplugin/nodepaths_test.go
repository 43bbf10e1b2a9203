package ipamplugin

import (
	"strings"
	"testing"

	"github.com/underpool/underpool/rpc"
)

// A network config (a NAD a namespace admin may write) names node paths only under the
// node's roots; the environment the runtime sets moves them.
func TestNodePathsConfined(t *testing.T) {
	type pathCase struct {
		name  string
		value string // the field's value in the config
		env   string // the field's environment override, "" unset
		want  string // the path used; "" when the config is refused
	}
	fields := []struct {
		field, envName string
		conf           func(v string) string
		got            func(*NetConf) string
		cases          []pathCase
	}{
		{"ipam.socket", SocketEnv,
			func(v string) string { return `{"ipam":{"socket":` + v + `}}` },
			func(c *NetConf) string { return c.IPAM.Socket },
			[]pathCase{
				{"unset is the default", ``, "", rpc.DefaultSocket},
				{"under the root", `/run/underpool/b.sock`, "", "/run/underpool/b.sock"},
				{"cleaned", `/run/underpool/x/../b.sock`, "", "/run/underpool/b.sock"},
				{"another daemon's socket", `/run/containerd/containerd.sock`, "", ""},
				{"a sibling with the root as prefix", `/run/underpool-evil/ipamd.sock`, "", ""},
				{"escapes by dot-dot", `/run/underpool/../docker.sock`, "", ""},
				{"the root itself", `/run/underpool`, "", ""},
				{"relative", `ipamd.sock`, "", ""},
				{"the environment wins", `/run/underpool/b.sock`, "/tmp/node/ipamd.sock", "/tmp/node/ipamd.sock"},
				{"the environment makes the config's value unused", `/etc/passwd`, "/tmp/node/ipamd.sock", "/tmp/node/ipamd.sock"},
			}},
		{"logFile", LogDirEnv,
			func(v string) string { return `{"logFile":` + v + `}` },
			func(c *NetConf) string { return c.LogFile },
			[]pathCase{
				{"unset is the default", ``, "", DefaultLogFile},
				{"under the root", `/var/log/underpool/net-a.log`, "", "/var/log/underpool/net-a.log"},
				{"a subdirectory", `/var/log/underpool/a/b.log`, "", "/var/log/underpool/a/b.log"},
				{"a root file", `/etc/cron.d/x`, "", ""},
				{"escapes by dot-dot", `/var/log/underpool/../../../etc/shadow`, "", ""},
				{"a sibling with the root as prefix", `/var/log/underpoolx.log`, "", ""},
				{"relative", `underpool.log`, "", ""},
				{"unset follows the environment", ``, "/tmp/e2e", "/tmp/e2e/underpool.log"},
				{"under the environment's directory", `/tmp/e2e/plugin.log`, "/tmp/e2e/", "/tmp/e2e/plugin.log"},
				{"the default root once the environment moved it", `/var/log/underpool/a.log`, "/tmp/e2e", ""},
			}},
	}
	for _, f := range fields {
		t.Run(f.field, func(t *testing.T) {
			for _, c := range f.cases {
				t.Run(c.name, func(t *testing.T) {
					t.Setenv(SocketEnv, "")
					t.Setenv(LogDirEnv, "")
					if f.envName != "" {
						t.Setenv(f.envName, c.env)
					}
					raw := `{}`
					if c.value != "" {
						raw = f.conf(`"` + c.value + `"`)
					}
					conf, err := LoadConf([]byte(raw))
					if c.want == "" && c.value != "" {
						if err == nil {
							t.Fatalf("%s accepted; want it refused", raw)
						}
						for _, part := range []string{f.field, c.value, "under "} {
							if !strings.Contains(err.Error(), part) {
								t.Fatalf("error %q does not name %q", err, part)
							}
						}
						return
					}
					if err != nil {
						t.Fatalf("%s: %v", raw, err)
					}
					if got := f.got(conf); got != c.want {
						t.Fatalf("%s: path %q, want %q", raw, got, c.want)
					}
				})
			}
		})
	}
}
