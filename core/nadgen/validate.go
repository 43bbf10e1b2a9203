package nadgen

import (
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/netplan"
)

// FieldErrors are every refusal of a spec, each naming its field and the fix.
type FieldErrors []string

func (e FieldErrors) Error() string { return strings.Join(e, "; ") }

// errs collects refusals as Validate walks the spec.
type errs struct{ list FieldErrors }

func (e *errs) add(field, format string, args ...any) {
	e.list = append(e.list, field+": "+fmt.Sprintf(format, args...))
}

// Validate checks a spec the way the CRD's rules and chain.LoadConf do, so that what it
// admits renders to a config every node's plugin accepts; nil when it is good.
func Validate(s *v1.UnderlayNetworkSpec) error {
	e := &errs{}
	checkNamespaces(e, s.Namespaces)
	if s.NADName != "" {
		for _, msg := range validation.IsDNS1123Subdomain(s.NADName) {
			e.add("spec.nadName", "%q %s", s.NADName, msg)
		}
	}
	if v := s.CNIVersion; v != "" && !slices.Contains(cniVersions, v) {
		e.add("spec.cniVersion", "%q is not one the plugins speak: use one of %s (default %s)", v, strings.Join(cniVersions, ", "), DefaultCNIVersion)
	}
	checkDelegate(e, s)
	checkIPAM(e, s.IPAM)
	checkRouting(e, s.Routing)
	checkRoutes(e, s.Routes)
	checkHostConnectivity(e, s.HostConnectivity)
	checkChecks(e, s.Checks)
	checkRDMA(e, s)
	if s.MACPrefix != "" {
		if _, err := netplan.ParseMACPrefix(s.MACPrefix); err != nil {
			e.add("spec.macPrefix", "%v", strings.TrimPrefix(err.Error(), "macPrefix "))
		}
	}
	if len(e.list) == 0 {
		return nil
	}
	return e.list
}

// cniVersions are the versions the generated conflist may declare: those the meta-plugin
// and the delegates it runs (macvlan, ipvlan, host-device of the plugins v1.x, sriov-cni)
// all speak with multus.
var cniVersions = []string{"0.3.1", "0.4.0", "1.0.0", "1.1.0"}

func checkNamespaces(e *errs, namespaces []string) {
	if len(namespaces) == 0 {
		e.add("spec.namespaces", "is empty: name the namespaces whose pods attach this network")
	}
	seen := map[string]bool{}
	for i, ns := range namespaces {
		field := fmt.Sprintf("spec.namespaces[%d]", i)
		for _, msg := range validation.IsDNS1123Label(ns) {
			e.add(field, "%q is not a namespace name: %s", ns, msg)
		}
		if seen[ns] {
			e.add(field, "%q is named twice: remove one", ns)
		}
		seen[ns] = true
	}
}

// checkDelegate: exactly one delegate, and its fields.
func checkDelegate(e *errs, s *v1.UnderlayNetworkSpec) {
	var set []string
	for _, d := range []struct {
		name  string
		isSet bool
	}{{"macvlan", s.Macvlan != nil}, {"ipvlan", s.Ipvlan != nil}, {"sriov", s.SRIOV != nil}, {"hostDevice", s.HostDevice != nil}} {
		if d.isSet {
			set = append(set, "spec."+d.name)
		}
	}
	switch {
	case len(set) == 0:
		e.add("spec", "no delegate: set one of spec.macvlan, spec.ipvlan, spec.sriov, spec.hostDevice (the plugin that makes the pod's link), e.g. macvlan: {master: eth1}")
		return
	case len(set) > 1:
		e.add("spec", "%s are all set: keep exactly one, the plugin that makes the pod's link", strings.Join(set, " and "))
		return
	}
	switch {
	case s.Macvlan != nil:
		checkMaster(e, "spec.macvlan", s.Macvlan.Master, s.Macvlan.Mode, macvlanModes, s.Macvlan.Vlan, s.Macvlan.MTU, s.IPAM)
	case s.Ipvlan != nil:
		checkMaster(e, "spec.ipvlan", s.Ipvlan.Master, s.Ipvlan.Mode, ipvlanModes, s.Ipvlan.Vlan, s.Ipvlan.MTU, s.IPAM)
	case s.SRIOV != nil:
		checkSRIOV(e, s.SRIOV)
	default:
		checkHostDevice(e, s.HostDevice)
	}
}

// The delegates' modes, as chain.LoadConf knows them.
var (
	macvlanModes = []string{"bridge", "private", "vepa", "passthru"}
	ipvlanModes  = []string{"l2", "l3", "l3s"}
)

// maxVlan is the highest 802.1q VLAN ID (4095 is reserved).
const maxVlan = 4094

// checkMaster checks a macvlan or ipvlan delegate.
func checkMaster(e *errs, field, master, mode string, modes []string, vlan, mtu int32, ipam v1.NetworkIPAM) {
	checkIfName(e, field+".master", master, true)
	if mode != "" && !slices.Contains(modes, mode) {
		e.add(field+".mode", "%q is not one of %s", mode, strings.Join(modes, ", "))
	}
	checkVlan(e, field+".vlan", vlan)
	switch {
	case mtu < 0 || mtu > 65535:
		e.add(field+".mtu", "%d must be between 68 and 65535 (0: the master's)", mtu)
	case mtu > 0 && mtu < 68:
		e.add(field+".mtu", "%d is below IPv4's minimum of 68: raise it, or leave it out for the master's", mtu)
	case mtu > 0 && mtu < 1280 && len(ipam.IPv6Pools) > 0:
		e.add(field+".mtu", "%d is below IPv6's minimum of 1280 and the network has IPv6 pools: raise it to at least 1280", mtu)
	}
}

func checkVlan(e *errs, field string, vlan int32) {
	if vlan < 0 || vlan > maxVlan {
		e.add(field, "%d must be between 1 and %d (0: untagged)", vlan, maxVlan)
	}
}

// checkIfName: a name the kernel takes for a link (at most 15 bytes, no '/', ':' or
// blanks, not "." or "..").
func checkIfName(e *errs, field, name string, required bool) {
	switch {
	case name == "":
		if required {
			e.add(field, "is empty: name the node's interface, e.g. eth1")
		}
	case len(name) > 15 || name == "." || name == ".." || strings.ContainsAny(name, "/: \t\n"):
		e.add(field, "%q is not an interface name (at most 15 characters, no '/', ':' or spaces)", name)
	}
}

// resourceNamePattern is a device plugin resource, "vendor.domain/name".
var resourceNamePattern = regexp.MustCompile(`^[^\s/]+/[^\s/]+$`)

func checkResourceName(e *errs, field, name string) {
	if name != "" && (!resourceNamePattern.MatchString(name) || len(name) > 253) {
		e.add(field, "%q is not a device plugin resource such as intel.com/sriov_netdevice", name)
	}
}

func checkSRIOV(e *errs, s *v1.SRIOVNetwork) {
	if s.ResourceName == "" {
		e.add("spec.sriov.resourceName", "is empty: name the SR-IOV device plugin's resource, e.g. intel.com/sriov_netdevice")
	}
	checkResourceName(e, "spec.sriov.resourceName", s.ResourceName)
	checkVlan(e, "spec.sriov.vlan", s.Vlan)
	for _, f := range []struct{ field, v string }{{"spec.sriov.spoofCheck", s.SpoofCheck}, {"spec.sriov.trust", s.Trust}} {
		if f.v != "" && f.v != "on" && f.v != "off" {
			e.add(f.field, "%q must be on or off (empty: as the PF has it)", f.v)
		}
	}
}

var pciAddress = regexp.MustCompile(`^[0-9a-fA-F]{4}:[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7]$`)

func checkHostDevice(e *errs, h *v1.HostDeviceNetwork) {
	n := 0
	for _, v := range []string{h.Device, h.PCIBusID, h.ResourceName} {
		if v != "" {
			n++
		}
	}
	if n != 1 {
		e.add("spec.hostDevice", "set exactly one of device, pciBusID, resourceName: the device to move into the pod")
	}
	checkIfName(e, "spec.hostDevice.device", h.Device, false)
	if h.PCIBusID != "" && !pciAddress.MatchString(h.PCIBusID) {
		e.add("spec.hostDevice.pciBusID", "%q is not a PCI address such as 0000:3b:00.2", h.PCIBusID)
	}
	checkResourceName(e, "spec.hostDevice.resourceName", h.ResourceName)
}

// checkIPAM: IPPool names (chain refuses empty names and CIDRs; Kubernetes names are
// stricter still), no pool in both families, a positive timeout.
func checkIPAM(e *errs, ipam v1.NetworkIPAM) {
	v4 := map[string]bool{}
	for _, f := range []struct {
		family string
		pools  []string
	}{{"ipv4Pools", ipam.IPv4Pools}, {"ipv6Pools", ipam.IPv6Pools}} {
		family := f.family
		for i, p := range f.pools {
			field := fmt.Sprintf("spec.ipam.%s[%d]", family, i)
			if _, err := netip.ParsePrefix(p); err == nil {
				e.add(field, "%q is a CIDR: name an IPPool object instead (kubectl get ippools)", p)
				continue
			}
			if msgs := validation.IsDNS1123Subdomain(p); len(msgs) > 0 {
				e.add(field, "%q is not an IPPool name: %s", p, msgs[0])
			}
			if family == "ipv4Pools" {
				v4[p] = true
			}
		}
	}
	for i, p := range ipam.IPv6Pools {
		if v4[p] {
			e.add(fmt.Sprintf("spec.ipam.ipv6Pools[%d]", i), "IPPool %s is in ipv4Pools too: a pool has one family, keep it in its own list", p)
		}
	}
	if ipam.Timeout != "" {
		if d, err := time.ParseDuration(ipam.Timeout); err != nil || d <= 0 {
			e.add("spec.ipam.timeout", "%q must be a positive duration such as \"30s\"", ipam.Timeout)
		}
	}
}

func checkRouting(e *errs, r *v1.NetworkRouting) {
	if r == nil {
		return
	}
	checkIfName(e, "spec.routing.defaultRouteInterface", r.DefaultRouteInterface, false)
	if r.TableBase < 0 || r.TableBase > 1<<30 {
		e.add("spec.routing.tableBase", "%d must be between 1 and 2^30 (0: the default %d)", r.TableBase, netplan.DefaultTableBase)
	}
	if r.RPFilter != nil && (*r.RPFilter < -1 || *r.RPFilter > 2) {
		e.add("spec.routing.rpFilter", "%d must be 0 (off), 1 (strict), 2 (loose) or -1 (leave alone)", *r.RPFilter)
	}
}

// checkRoutes: the plugin's rules for its routes (netplan.ParseNetworkRoutes), each
// refusal naming spec.routes[i].
func checkRoutes(e *errs, routes []v1.NetworkRoute) {
	specs := make([]netplan.RouteSpec, 0, len(routes))
	for _, r := range routes {
		specs = append(specs, netplan.RouteSpec{Dst: r.Dst, Gw: r.Gw})
	}
	_, refused := netplan.ParseNetworkRoutes("spec.routes", specs)
	for _, err := range refused {
		e.list = append(e.list, err.Error())
	}
}

func checkHostConnectivity(e *errs, h *v1.NetworkHostConnectivity) {
	if h == nil {
		return
	}
	for i, s := range h.NodeAddresses {
		if _, err := netip.ParseAddr(s); err != nil {
			e.add(fmt.Sprintf("spec.hostConnectivity.nodeAddresses[%d]", i), "%q is not an IP address", s)
		}
	}
	for _, f := range []struct {
		field string
		list  []string
	}{{"serviceCIDRs", h.ServiceCIDRs}, {"clusterCIDRs", h.ClusterCIDRs}} {
		for i, s := range f.list {
			if _, err := netip.ParsePrefix(s); err != nil {
				e.add(fmt.Sprintf("spec.hostConnectivity.%s[%d]", f.field, i), "%q is not a CIDR (e.g. 10.96.0.0/12)", s)
			}
		}
	}
}

func checkChecks(e *errs, c *v1.NetworkChecks) {
	if c == nil || c.Timeout == "" {
		return
	}
	if d, err := time.ParseDuration(c.Timeout); err != nil || d <= 0 || d > 10*time.Second {
		e.add("spec.checks.timeout", "%q must be a duration between 1ms and 10s, such as \"30ms\"", c.Timeout)
	}
}

func checkRDMA(e *errs, s *v1.UnderlayNetworkSpec) {
	if s.RDMA == nil {
		return
	}
	if s.RDMA.Mode != "exclusive" && s.RDMA.Mode != "shared" {
		e.add("spec.rdma.mode", "%q must be exclusive (the device moves into the pod) or shared (it stays on the node); leave rdma out for none", s.RDMA.Mode)
	}
	checkResourceName(e, "spec.rdma.resourceName", s.RDMA.ResourceName)
	if s.RDMA.ResourceName != "" && (s.SRIOV != nil || (s.HostDevice != nil && s.HostDevice.ResourceName != "")) {
		e.add("spec.rdma.resourceName", "is for macvlan and ipvlan (the RDMA shared device plugin's resource): this network names its device plugin's resource in its delegate's resourceName; remove spec.rdma.resourceName")
	}
}
