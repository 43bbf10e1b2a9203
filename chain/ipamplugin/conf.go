// Package ipamplugin is underpool-ipam, the IPAM plugin for standard conflists
// ({"type":"macvlan","ipam":{"type":"underpool-ipam",...}}), and the ipamd half the
// meta-plugin (package chain) builds on. It owns: the network config's IPAM part and the
// node paths (ipam.socket, logFile), the calls to ipamd with their CNI error codes,
// CNI_ARGS, the IPAM result, the plugin log and the preamble every verb of both plugins
// runs. It imports no kernel networking (netlink, netns, underlay): the IPAM plugin
// binary stays as small as host-local, and `make check-deps` proves it.
package ipamplugin

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/cni/pkg/version"
)

// DefaultTimeout bounds one call to ipamd when ipam.timeout is left out.
const DefaultTimeout = 30 * time.Second

// NetConf is what both plugins read of a network config: the IPAM plugin all of it, the
// meta-plugin embeds it in its own.
type NetConf struct {
	types.PluginConf
	IPAM IPAMConf `json:"ipam"`
	// DefaultRoute lets this interface hold the pod's default route per family, through
	// the pool's gateway (default true); which interface holds it is the meta-plugin's
	// routing business.
	DefaultRoute *bool `json:"defaultRoute,omitempty"`
	// LogFile must lie under the node's log directory (LogDirEnv, default DefaultLogDir).
	LogFile  string `json:"logFile,omitempty"`
	LogLevel string `json:"logLevel,omitempty"`
	// RuntimeConfig carries capability args (multus: ips, mac, deviceID); the meta-plugin
	// passes it on to its delegate.
	RuntimeConfig map[string]any `json:"runtimeConfig,omitempty"`
}

// IPAMConf says where ipamd listens and which pools to use.
type IPAMConf struct {
	Type string `json:"type,omitempty"`
	// Socket must lie under SocketRoot; SocketEnv, when set, replaces it.
	Socket string `json:"socket,omitempty"`
	// IPv4Pools and IPv6Pools are the network's own pools; a pod annotation or a namespace
	// default overrides them, and without any the cluster default pools apply.
	IPv4Pools []string `json:"ipv4Pools,omitempty"`
	IPv6Pools []string `json:"ipv6Pools,omitempty"`
	// Timeout bounds one call to ipamd, as a Go duration ("30s").
	Timeout string `json:"timeout,omitempty"`

	timeout time.Duration
}

// LoadConf parses and validates the IPAM plugin's network config; errors name the
// field and the fix.
func LoadConf(data []byte) (*NetConf, error) {
	conf := &NetConf{}
	if err := json.Unmarshal(data, conf); err != nil {
		return nil, fmt.Errorf("network config is not valid JSON: %v", err)
	}
	if err := conf.Load(); err != nil {
		return nil, err
	}
	return conf, nil
}

// Load validates the fields and settles the defaults and node paths of a parsed config;
// the meta-plugin runs it on the NetConf it embeds.
func (c *NetConf) Load() error {
	if c.RawPrevResult != nil {
		if err := version.ParsePrevResult(&c.PluginConf); err != nil {
			return fmt.Errorf("prevResult: %v", err)
		}
	}
	if err := c.loadPaths(); err != nil {
		return err
	}
	c.IPAM.timeout = DefaultTimeout
	if c.IPAM.Timeout != "" {
		d, err := time.ParseDuration(c.IPAM.Timeout)
		if err != nil || d <= 0 {
			return fmt.Errorf("ipam.timeout %q must be a positive duration such as \"30s\"", c.IPAM.Timeout)
		}
		c.IPAM.timeout = d
	}
	if err := checkPoolNames("ipam.ipv4Pools", c.IPAM.IPv4Pools); err != nil {
		return err
	}
	return checkPoolNames("ipam.ipv6Pools", c.IPAM.IPv6Pools)
}

func checkPoolNames(field string, names []string) error {
	for i, n := range names {
		if strings.TrimSpace(n) == "" {
			return fmt.Errorf("%s[%d] is empty: give the name of an IPPool", field, i)
		}
		if _, err := netip.ParsePrefix(n); err == nil {
			return fmt.Errorf("%s[%d] %q is a CIDR: name an IPPool object instead (kubectl get ippools)", field, i, n)
		}
	}
	return nil
}

// WantDefaultRoute is defaultRoute, true when left out.
func (c *NetConf) WantDefaultRoute() bool { return c.DefaultRoute == nil || *c.DefaultRoute }

// requestedIPs are the addresses the runtime asks for: multus passes a pod's "ips" as the
// runtimeConfig capability "ips".
func (c *NetConf) requestedIPs() []string {
	list, _ := c.RuntimeConfig["ips"].([]any)
	var out []string
	for _, v := range list {
		if s, ok := v.(string); ok {
			out = append(out, s)
		}
	}
	return out
}
