// Package nadgen renders an UnderlayNetwork into the NetworkAttachmentDefinition config
// the underpool meta-plugin reads, and validates the spec first with errors that name
// the field and the fix. It is pure: the controller writes what it renders into each
// target namespace, the webhook refuses what Validate refuses, and `kubectl underpool
// render` prints it; the three never disagree because they share this code.
//
// The rendered config must be one chain.LoadConf accepts, and a spec Validate admits must
// render to one (the tests run LoadConf over rendered specs, fuzzed ones included):
// Validate states LoadConf's rules in the CRD's field names, plus the CRD's own
// (exactly one delegate, names Kubernetes accepts).
package nadgen

import (
	"encoding/json"

	v1 "github.com/underpool/underpool/api/v1"
)

// DefaultCNIVersion is the generated config's cniVersion when the spec names none.
const DefaultCNIVersion = "1.1.0"

// ResourceNameAnnotation is multus' NetworkAttachmentDefinition annotation naming the
// device plugin resource a pod on the network needs (the network resources injector
// adds it to the pod's requests; multus passes the allocated device's PCI address on).
const ResourceNameAnnotation = "k8s.v1.cni.cncf.io/resourceName"

// Rendered is what one UnderlayNetwork becomes in every target namespace.
type Rendered struct {
	// Name is the NetworkAttachmentDefinitions' name, and the network's in Config.
	Name string
	// Config is the NAD's spec.config: a conflist of the underpool meta-plugin.
	Config string
	// Annotations the NAD carries: the device plugin resource, when the network has one.
	Annotations map[string]string
}

// conflist is the generated config; fields in the order a reader expects them.
type conflist struct {
	CNIVersion string   `json:"cniVersion"`
	Name       string   `json:"name"`
	Plugins    []plugin `json:"plugins"`
}

// plugin is the underpool meta-plugin's config (chain.NetConf). The sub-objects reuse
// the API's types: their JSON names are the plugin's on purpose, so the docs of one are
// the docs of the other (the tests compare what chain.LoadConf reads back).
type plugin struct {
	Type string `json:"type"`
	// ips and mac: multus hands a pod's requested address and MAC over as runtimeConfig
	Capabilities     map[string]bool             `json:"capabilities"`
	Delegate         map[string]any              `json:"delegate"`
	IPAM             v1.NetworkIPAM              `json:"ipam"`
	DefaultRoute     *bool                       `json:"defaultRoute,omitempty"`
	Vlan             int32                       `json:"vlan,omitempty"`
	Routing          *v1.NetworkRouting          `json:"routing,omitempty"`
	Routes           []v1.NetworkRoute           `json:"routes,omitempty"`
	HostConnectivity *v1.NetworkHostConnectivity `json:"hostConnectivity,omitempty"`
	Checks           *v1.NetworkChecks           `json:"checks,omitempty"`
	RDMA             *rdmaConf                   `json:"rdma,omitempty"`
	MACPrefix        string                      `json:"macPrefix,omitempty"`
}

// rdmaConf is the plugin's rdma: the resource name is the NAD's annotation, not config.
type rdmaConf struct {
	Mode string `json:"mode"`
}

// Render validates the network and renders it; the error names every bad field.
func Render(n *v1.UnderlayNetwork) (Rendered, error) {
	if err := Validate(&n.Spec); err != nil {
		return Rendered{}, err
	}
	return render(n)
}

// render renders a spec Validate admitted (the tests also render refused ones, to show
// that chain.LoadConf refuses them too).
func render(n *v1.UnderlayNetwork) (Rendered, error) {
	s := &n.Spec
	delegate, vlan, resource := delegateOf(s)
	p := plugin{Type: "underpool", Capabilities: map[string]bool{"ips": true, "mac": true}, Delegate: delegate,
		IPAM: s.IPAM, DefaultRoute: s.DefaultRoute, Vlan: vlan, Routing: s.Routing, Routes: s.Routes,
		HostConnectivity: s.HostConnectivity, Checks: s.Checks, MACPrefix: s.MACPrefix}
	if s.RDMA != nil {
		p.RDMA = &rdmaConf{Mode: s.RDMA.Mode}
		if s.RDMA.ResourceName != "" {
			resource = s.RDMA.ResourceName
		}
	}
	version := s.CNIVersion
	if version == "" {
		version = DefaultCNIVersion
	}
	config, err := json.Marshal(conflist{CNIVersion: version, Name: n.NADName(), Plugins: []plugin{p}})
	if err != nil {
		return Rendered{}, err // maps of strings and numbers: cannot fail
	}
	out := Rendered{Name: n.NADName(), Config: string(config)}
	if resource != "" {
		out.Annotations = map[string]string{ResourceNameAnnotation: resource}
	}
	return out, nil
}

// delegateOf is the delegate's config, the VLAN the meta-plugin puts a master's link on
// (macvlan and ipvlan: the uplink is the meta-plugin's; sriov tags its VF itself) and
// the device plugin resource, of the one delegate Validate let through.
func delegateOf(s *v1.UnderlayNetworkSpec) (map[string]any, int32, string) {
	switch {
	case s.Macvlan != nil:
		return masterDelegate("macvlan", s.Macvlan.Master, or(s.Macvlan.Mode, "bridge"), s.Macvlan.MTU), s.Macvlan.Vlan, ""
	case s.Ipvlan != nil:
		return masterDelegate("ipvlan", s.Ipvlan.Master, or(s.Ipvlan.Mode, "l2"), s.Ipvlan.MTU), s.Ipvlan.Vlan, ""
	case s.SRIOV != nil:
		d := map[string]any{"type": "sriov"}
		set(d, "vlan", s.SRIOV.Vlan)
		set(d, "spoofchk", s.SRIOV.SpoofCheck)
		set(d, "trust", s.SRIOV.Trust)
		return d, 0, s.SRIOV.ResourceName
	default:
		h := s.HostDevice
		d := map[string]any{"type": "host-device"}
		set(d, "device", h.Device)
		set(d, "pciBusID", h.PCIBusID)
		return d, 0, h.ResourceName
	}
}

func masterDelegate(kind, master, mode string, mtu int32) map[string]any {
	d := map[string]any{"type": kind, "master": master, "mode": mode}
	set(d, "mtu", mtu)
	return d
}

// set puts a value that is not its type's zero into d.
func set[T comparable](d map[string]any, key string, v T) {
	var zero T
	if v != zero {
		d[key] = v
	}
}

func or(s, fallback string) string {
	if s == "" {
		return fallback
	}
	return s
}
