// Package chain is the logic of the underpool meta-plugin: its configuration (routing,
// checks, RDMA, host connectivity, the delegate), invoking the delegate plugin that makes
// the link, configuring addresses, routes and rules in the pod, the host veth and the
// RDMA device, and the CNI result of all that. What it shares with underpool-ipam (the
// IPAM part of the config, the calls to ipamd, CNI_ARGS, the log, the verbs' preamble)
// is package ipamplugin's, which links no kernel networking.
package chain

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/underpool/underpool/chain/ipamplugin"
	"github.com/underpool/underpool/netplan"
	"github.com/underpool/underpool/underlay"
)

// NetConf is the configuration of the underpool meta-plugin: the IPAM plugin's (ipam,
// defaultRoute, logFile, runtimeConfig, ...) and what the meta-plugin does with the link.
type NetConf struct {
	ipamplugin.NetConf
	// Delegate is the config of the plugin that makes the link (macvlan, ipvlan, sriov,
	// host-device, ...). Its own ipam must be empty: underpool does the addressing.
	Delegate map[string]any `json:"delegate,omitempty"`
	// Routing decides which interface holds the default route that defaultRoute allows.
	Routing RoutingConf `json:"routing,omitempty"`
	Checks  ChecksConf  `json:"checks,omitempty"`
	RDMA    RDMAConf    `json:"rdma,omitempty"`
	// Routes are the network's own routes, added in the pod for this attachment (in its
	// policy table too) under the routes of its Subnet, IPPool and pod annotation: theirs
	// win on the same dst (netplan.Allocation.WithNetworkRoutes).
	Routes []netplan.RouteSpec `json:"routes,omitempty"`
	// HostConnectivity joins a macvlan/ipvlan pod to its own node with a veth pair.
	HostConnectivity HostConnectivityConf `json:"hostConnectivity,omitempty"`
	// Vlan is the 802.1q VLAN (1-4094) the pod's link goes on for every pool of the network;
	// a pool's own vlan must then be the same. 0: the pools' vlan decides (uplink.go).
	Vlan int `json:"vlan,omitempty"`
	// Bond makes the delegate's master a bond of slaves, made when missing (bond.go).
	Bond *BondConf `json:"bond,omitempty"`
	// MACPrefix, two bytes such as "0a:58", gives the pod interface the MAC prefix +
	// four bytes of its address (netplan.MACFromIP: IPv4 as is, IPv6 hashed; a multus
	// "mac" request wins). Empty: the delegate's MAC is kept.
	MACPrefix string `json:"macPrefix,omitempty"`
	// Args carries the "args" convention field, passed to the delegate as is.
	Args map[string]any `json:"args,omitempty"`
	// DeviceID and PCIBusID are what multus injects for a NAD with a device-plugin
	// resource (an SR-IOV VF's PCI address); the delegate gets them as its own.
	DeviceID string `json:"deviceID,omitempty"`
	PCIBusID string `json:"pciBusID,omitempty"`

	rawPrevResult map[string]any
	// routes are Routes parsed
	routes []netplan.Route
	// uplinkMaster and sriovVlan are what the attachment's uplink gives the delegate
	// (its master, an sriov VF's VLAN) over its own config: see withUplink.
	uplinkMaster string
	sriovVlan    int
}

// RoutingConf decides the default route and policy routing of a pod with several NICs.
type RoutingConf struct {
	// DefaultRouteInterface names the pod interface that holds the default route; empty:
	// the first interface attached that finds no default route in the pod takes it.
	DefaultRouteInterface string `json:"defaultRouteInterface,omitempty"`
	// PolicyRouting gives the interface its own routing table and "from <address>" rules
	// so replies leave by the NIC the request came in on (default true).
	PolicyRouting *bool `json:"policyRouting,omitempty"`
	// TableBase numbers the tables: interface netN gets TableBase+N (default 100).
	TableBase int `json:"tableBase,omitempty"`
	// RPFilter is the pod's IPv4 rp_filter when policy routing is on (default 2, loose;
	// -1 leaves it as the runtime set it).
	RPFilter *int `json:"rpFilter,omitempty"`
}

// ChecksConf are the underlay checks of ADD. Each wait is bounded by Timeout.
type ChecksConf struct {
	// IPConflict probes the address before using it (ARP for IPv4, the kernel's
	// duplicate address detection for IPv6); a conflict fails ADD and ipamd keeps the
	// address out of allocation for a while (default true).
	IPConflict *bool `json:"ipConflict,omitempty"`
	// Gateway fails ADD when the pool's gateway does not answer ARP/NDP (default false).
	Gateway *bool `json:"gateway,omitempty"`
	// Announce sends a gratuitous ARP / unsolicited neighbour advertisement once the
	// address is up, so neighbours drop a previous owner's MAC (default true).
	Announce *bool `json:"announce,omitempty"`
	// Timeout is each probe's window, as a Go duration, three questions in it: the ARP
	// conflict probe and the kernel's IPv6 duplicate address detection (default
	// "30ms", see DefaultConflictWindow), the gateway check (default "100ms").
	Timeout string `json:"timeout,omitempty"`

	timeout time.Duration // as set; 0: the defaults
}

// DefaultConflictWindow is how long ADD listens for another host claiming the address.
// Answers on a LAN take well under a millisecond: three questions 10 ms apart leave
// each at least 10 ms, and an answer that arrived in time counts even when the plugin
// was not scheduled to read it in time. The probe runs while the pod's addresses and
// routes are set, so ADD waits only for what is left of the window.
const DefaultConflictWindow = 30 * time.Millisecond

// DefaultCheckTimeout bounds the gateway check: a failed check fails ADD, and routers
// answer ARP from a rate-limited control plane, so it gets a longer default.
const DefaultCheckTimeout = 100 * time.Millisecond

func (c ChecksConf) conflictWindow() time.Duration {
	if c.timeout == 0 {
		return DefaultConflictWindow
	}
	return c.timeout
}

func (c ChecksConf) gatewayWait() time.Duration {
	if c.timeout == 0 {
		return DefaultCheckTimeout
	}
	return c.timeout
}

func (c ChecksConf) ipConflict() bool { return c.IPConflict == nil || *c.IPConflict }
func (c ChecksConf) gateway() bool    { return c.Gateway != nil && *c.Gateway }
func (c ChecksConf) announce() bool   { return c.Announce == nil || *c.Announce }

func (c *ChecksConf) load() error {
	if c.Timeout == "" {
		return nil
	}
	d, err := time.ParseDuration(c.Timeout)
	if err != nil || d <= 0 || d > 10*time.Second {
		return fmt.Errorf("checks.timeout %q must be a duration between 1ms and 10s, such as \"30ms\"", c.Timeout)
	}
	c.timeout = d
	return nil
}

func (r RoutingConf) policyRouting() bool { return r.PolicyRouting == nil || *r.PolicyRouting }

// table is ifName's own routing table, 0 without policy routing.
func (r RoutingConf) table(ifName string) int {
	if !r.policyRouting() {
		return 0
	}
	return netplan.TableFor(ifName, r.TableBase)
}

func (r RoutingConf) rpFilter() int {
	if r.RPFilter == nil {
		return underlay.RPFilterLoose
	}
	return *r.RPFilter
}

func checkRouting(r RoutingConf) error {
	if r.TableBase < 0 || r.TableBase > 1<<30 {
		return fmt.Errorf("routing.tableBase %d must be between 1 and 2^30 (0: the default %d)", r.TableBase, netplan.DefaultTableBase)
	}
	if r.RPFilter != nil && (*r.RPFilter < -1 || *r.RPFilter > 2) {
		return fmt.Errorf("routing.rpFilter %d must be 0 (off), 1 (strict), 2 (loose) or -1 (leave alone)", *r.RPFilter)
	}
	return nil
}

// LoadConf parses and validates the meta-plugin's network config; errors name the
// field and the fix.
func LoadConf(data []byte) (*NetConf, error) {
	conf := &NetConf{}
	if err := json.Unmarshal(data, conf); err != nil {
		return nil, fmt.Errorf("network config is not valid JSON: %v", err)
	}
	conf.rawPrevResult = conf.RawPrevResult // Load parses it and clears it; delegates need it
	if err := conf.NetConf.Load(); err != nil {
		return nil, err
	}
	if err := conf.loadStateDir(); err != nil {
		return nil, err
	}
	if err := checkRouting(conf.Routing); err != nil {
		return nil, err
	}
	routes, errs := netplan.ParseNetworkRoutes("routes", conf.Routes)
	if len(errs) > 0 {
		return nil, errs[0]
	}
	conf.routes = routes
	if err := checkRDMA(conf.RDMA); err != nil {
		return nil, err
	}
	if err := conf.Checks.load(); err != nil {
		return nil, err
	}
	if err := conf.HostConnectivity.load(); err != nil {
		return nil, err
	}
	if conf.MACPrefix != "" {
		if _, err := netplan.ParseMACPrefix(conf.MACPrefix); err != nil {
			return nil, err
		}
	}
	if err := checkDelegate(conf.Delegate); err != nil {
		return nil, err
	}
	return conf, checkUplink(conf)
}

func checkDelegate(d map[string]any) error {
	if d == nil {
		return fmt.Errorf("delegate is missing: give the config of the plugin that makes the link, e.g. {\"type\":\"macvlan\",\"master\":\"eth1\",\"mode\":\"bridge\"}")
	}
	t, _ := d["type"].(string)
	if t == "" {
		return fmt.Errorf("delegate.type is empty: name the plugin that makes the link (macvlan, ipvlan, sriov, host-device)")
	}
	if t == "underpool" {
		return fmt.Errorf("delegate.type is underpool: the delegate must be another plugin")
	}
	if ipam, ok := d["ipam"].(map[string]any); ok && len(ipam) > 0 {
		return fmt.Errorf("delegate.ipam must be empty: underpool assigns the addresses (move the pools to ipam.ipv4Pools/ipv6Pools)")
	}
	// modes the delegates know, checked here so a typo fails with the field's name
	// rather than deep inside the delegate
	modes := map[string][]string{"macvlan": {"bridge", "private", "vepa", "passthru"}, "ipvlan": {"l2", "l3", "l3s"}}
	if allowed, known := modes[t]; known {
		if m, _ := d["mode"].(string); m != "" && !slices.Contains(allowed, m) {
			return fmt.Errorf("delegate.mode %q is not one of %s's modes: use %s", m, t, strings.Join(allowed, ", "))
		}
	}
	return nil
}

// DelegateType is the delegate plugin's binary name.
func (c *NetConf) DelegateType() string {
	t, _ := c.Delegate["type"].(string)
	return t
}

// addressingDelegates configure a pod's addresses themselves and refuse to run without
// them: ipvlan runs IPAM unless its config names an IPAM plugin or its prevResult carries
// addresses. They get the allocation as prevResult (DelegateConfWith), and ADD takes the
// addresses back before configuring the pod as for any other delegate.
var addressingDelegates = map[string]bool{"ipvlan": true}

// DelegateConfiguresAddresses reports whether the delegate insists on configuring the
// addresses itself (see addressingDelegates).
func (c *NetConf) DelegateConfiguresAddresses() bool { return addressingDelegates[c.DelegateType()] }

// DelegateConfWith is DelegateConf with prev as the delegate's prevResult, converted to
// the network's CNI version.
func (c *NetConf) DelegateConfWith(prev types.Result) ([]byte, error) {
	conf, err := c.DelegateConf()
	if err != nil {
		return nil, err
	}
	converted, err := prev.GetAsVersion(c.CNIVersion)
	if err != nil {
		return nil, fmt.Errorf("the delegate's prevResult in CNI version %s: %w", c.CNIVersion, err)
	}
	var raw, d map[string]any
	if err := remarshal(converted, &raw); err != nil {
		return nil, err
	}
	if err := json.Unmarshal(conf, &d); err != nil {
		return nil, err
	}
	d["prevResult"] = raw
	return json.Marshal(d)
}

// remarshal turns v into out through its JSON form.
func remarshal(v any, out any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, out)
}

// DelegateConf renders the delegate's config: its own fields plus the network's
// cniVersion, name and runtime arguments (prevResult for CHECK, the valid attachments for
// GC), with no IPAM.
func (c *NetConf) DelegateConf() ([]byte, error) {
	d := make(map[string]any, len(c.Delegate)+4)
	for k, v := range c.Delegate {
		d[k] = v
	}
	d["cniVersion"] = c.CNIVersion
	d["name"] = c.Name
	delete(d, "ipam")
	if len(c.RuntimeConfig) > 0 {
		d["runtimeConfig"] = c.RuntimeConfig
	}
	if len(c.Args) > 0 {
		d["args"] = c.Args
	}
	if c.uplinkMaster != "" {
		d["master"] = c.uplinkMaster
	}
	if _, set := d["vlan"]; !set && c.sriovVlan != 0 {
		d["vlan"] = c.sriovVlan
	}
	// the device plugin's VF: sriov-cni reads deviceID, host-device pciBusID or
	// runtimeConfig.deviceID; a value the delegate config sets itself wins
	for key, v := range map[string]string{"deviceID": c.DeviceID, "pciBusID": c.PCIBusID} {
		if _, set := d[key]; !set && v != "" {
			d[key] = v
		}
	}
	if c.ValidAttachments != nil { // GC: under both the spec's name and libcni's older one
		d["cni.dev/valid-attachments"] = c.ValidAttachments
		d["cni.dev/attachments"] = c.ValidAttachments
	}
	if c.rawPrevResult != nil { // CHECK: the delegate verifies against the ADD result
		d["prevResult"] = c.rawPrevResult
	}
	return json.Marshal(d)
}
