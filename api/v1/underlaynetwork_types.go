package v1

import metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

// UnderlayNetworkSpec is one underlay network, written once and validated: the controller
// renders it into a NetworkAttachmentDefinition in each of Namespaces (core/nadgen), so
// nobody writes the underpool meta-plugin's JSON by hand. Exactly one delegate (macvlan,
// ipvlan, sriov, hostDevice) says which plugin makes the pod's link.
// +kubebuilder:validation:XValidation:rule="[has(self.macvlan), has(self.ipvlan), has(self.sriov), has(self.hostDevice)].exists_one(x, x)",message="set exactly one of spec.macvlan, spec.ipvlan, spec.sriov, spec.hostDevice: the plugin that makes the pod's link"
// +kubebuilder:validation:XValidation:rule="!(has(self.rdma) && has(self.rdma.resourceName) && (has(self.sriov) || (has(self.hostDevice) && has(self.hostDevice.resourceName))))",message="spec.rdma.resourceName is for macvlan and ipvlan (the RDMA shared device plugin's resource): an sriov or hostDevice network names its device plugin's resource in its own resourceName; remove spec.rdma.resourceName"
type UnderlayNetworkSpec struct {
	// Namespaces get the NetworkAttachmentDefinition; pods there name it in the
	// k8s.v1.cni.cncf.io/networks annotation.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=1024
	// +listType=set
	// +kubebuilder:validation:items:MaxLength=63
	// +kubebuilder:validation:items:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	Namespaces []string `json:"namespaces"`
	// NADName names the NetworkAttachmentDefinitions and the network in their config;
	// empty: the UnderlayNetwork's own name.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	NADName string `json:"nadName,omitempty"`
	// CNIVersion of the generated config (default 1.1.0; a delegate older than that may
	// need 1.0.0 or 0.4.0).
	// +optional
	// +kubebuilder:validation:Enum="0.3.1";"0.4.0";"1.0.0";"1.1.0"
	CNIVersion string `json:"cniVersion,omitempty"`

	// Macvlan gives each pod a macvlan link on a master interface of the node.
	// +optional
	Macvlan *MacvlanNetwork `json:"macvlan,omitempty"`
	// Ipvlan gives each pod an ipvlan link on a master interface of the node (one MAC
	// for all the pods on it).
	// +optional
	Ipvlan *IpvlanNetwork `json:"ipvlan,omitempty"`
	// SRIOV gives each pod an SR-IOV VF that the device plugin picked.
	// +optional
	SRIOV *SRIOVNetwork `json:"sriov,omitempty"`
	// HostDevice moves a whole device of the node into the pod.
	// +optional
	HostDevice *HostDeviceNetwork `json:"hostDevice,omitempty"`

	// IPAM names the network's own pools; a pod annotation or a namespace default
	// overrides them, and without any the cluster default pools apply.
	// +optional
	IPAM NetworkIPAM `json:"ipam,omitempty"`
	// DefaultRoute lets this interface hold the pod's default route through its pool's
	// gateway (default true); routing.defaultRouteInterface picks among several.
	// +optional
	DefaultRoute *bool `json:"defaultRoute,omitempty"`
	// Routing: which interface holds the default route, policy routing per NIC.
	// +optional
	Routing *NetworkRouting `json:"routing,omitempty"`
	// Routes are added in the pod for this network's interface, in the main table and,
	// with policy routing, in the interface's own table. They are the lowest level: a
	// Subnet's, IPPool's or pod annotation's route to the same dst replaces the network's.
	// A route of a family a pod's attachment has no address of fails that pod's ADD.
	// +optional
	// +kubebuilder:validation:MaxItems=64
	// +listType=map
	// +listMapKey=dst
	Routes []NetworkRoute `json:"routes,omitempty"`
	// HostConnectivity joins a macvlan or ipvlan pod to its own node with a veth pair.
	// +optional
	HostConnectivity *NetworkHostConnectivity `json:"hostConnectivity,omitempty"`
	// Checks are the underlay checks of ADD (address conflict, gateway, announcement).
	// +optional
	Checks *NetworkChecks `json:"checks,omitempty"`
	// RDMA asks for the RDMA device behind the pod's link.
	// +optional
	RDMA *NetworkRDMA `json:"rdma,omitempty"`
	// MACPrefix, two bytes such as "0a:58", gives the pod interface that prefix and four
	// bytes of its address; empty: the delegate's MAC is kept.
	// +optional
	// +kubebuilder:validation:Pattern=`^[0-9a-fA-F]{2}:[0-9a-fA-F]{2}$`
	MACPrefix string `json:"macPrefix,omitempty"`
}

// MacvlanNetwork is the macvlan delegate.
type MacvlanNetwork struct {
	// Master is the node's interface the pods' links hang off, e.g. eth1.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=15
	// +kubebuilder:validation:Pattern=`^[^\s/:]+$`
	Master string `json:"master"`
	// Mode is macvlan's mode (default bridge).
	// +optional
	// +kubebuilder:validation:Enum=bridge;private;vepa;passthru
	Mode string `json:"mode,omitempty"`
	// Vlan puts the pods' links on this 802.1q VLAN of master (<master>.<vlan>, made by
	// ADD when missing); 0: the pools' vlan decides, untagged when they name none.
	// +optional
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=4094
	Vlan int32 `json:"vlan,omitempty"`
	// MTU of the pod's link; 0: master's.
	// +optional
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=65535
	MTU int32 `json:"mtu,omitempty"`
}

// IpvlanNetwork is the ipvlan delegate.
type IpvlanNetwork struct {
	// Master is the node's interface the pods' links hang off, e.g. eth1.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=15
	// +kubebuilder:validation:Pattern=`^[^\s/:]+$`
	Master string `json:"master"`
	// Mode is ipvlan's mode (default l2).
	// +optional
	// +kubebuilder:validation:Enum=l2;l3;l3s
	Mode string `json:"mode,omitempty"`
	// Vlan, as for macvlan.
	// +optional
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=4094
	Vlan int32 `json:"vlan,omitempty"`
	// MTU of the pod's link; 0: master's.
	// +optional
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=65535
	MTU int32 `json:"mtu,omitempty"`
}

// SRIOVNetwork is the sriov delegate: the SR-IOV device plugin picks a VF of ResourceName
// for each pod, multus passes its PCI address on, sriov-cni moves it into the pod.
type SRIOVNetwork struct {
	// ResourceName is the device plugin's resource, e.g. intel.com/sriov_netdevice: it
	// goes into the NetworkAttachmentDefinition's k8s.v1.cni.cncf.io/resourceName.
	// +kubebuilder:validation:MinLength=3
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[^\s/]+/[^\s/]+$`
	ResourceName string `json:"resourceName"`
	// Vlan tags the VF (0: untagged).
	// +optional
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=4094
	Vlan int32 `json:"vlan,omitempty"`
	// SpoofCheck turns the VF's MAC spoof checking on or off; empty: as the PF has it.
	// +optional
	// +kubebuilder:validation:Enum=on;off
	SpoofCheck string `json:"spoofCheck,omitempty"`
	// Trust turns the VF's trusted mode on or off; empty: as the PF has it.
	// +optional
	// +kubebuilder:validation:Enum=on;off
	Trust string `json:"trust,omitempty"`
}

// HostDeviceNetwork is the host-device delegate: one of Device, PCIBusID or
// ResourceName says which device moves into the pod.
// +kubebuilder:validation:XValidation:rule="[has(self.device), has(self.pciBusID), has(self.resourceName)].exists_one(x, x)",message="set exactly one of spec.hostDevice.device, pciBusID, resourceName: the device to move into the pod"
type HostDeviceNetwork struct {
	// Device is the node's interface, e.g. eth2 (one pod per node can have it).
	// +optional
	// +kubebuilder:validation:MaxLength=15
	// +kubebuilder:validation:Pattern=`^[^\s/:]+$`
	Device string `json:"device,omitempty"`
	// PCIBusID is the device's PCI address, e.g. 0000:3b:00.2.
	// +optional
	// +kubebuilder:validation:Pattern=`^[0-9a-fA-F]{4}:[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7]$`
	PCIBusID string `json:"pciBusID,omitempty"`
	// ResourceName is a device plugin's resource: the plugin picks the device and multus
	// passes its PCI address.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[^\s/]+/[^\s/]+$`
	ResourceName string `json:"resourceName,omitempty"`
}

// NetworkIPAM names the network's pools per family, earlier preferred.
type NetworkIPAM struct {
	// IPv4Pools are IPPool names.
	// +optional
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=253
	// +kubebuilder:validation:items:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	IPv4Pools []string `json:"ipv4Pools,omitempty"`
	// IPv6Pools are IPPool names.
	// +optional
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=253
	// +kubebuilder:validation:items:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	IPv6Pools []string `json:"ipv6Pools,omitempty"`
	// Timeout bounds one call to ipamd, as a Go duration (default "30s").
	// +optional
	// +kubebuilder:validation:MaxLength=32
	Timeout string `json:"timeout,omitempty"`
}

// NetworkRouting decides the default route and policy routing of a pod with several NICs.
type NetworkRouting struct {
	// DefaultRouteInterface names the pod interface that holds the default route (net1,
	// net2, ...); empty: the first attached that finds none in the pod.
	// +optional
	// +kubebuilder:validation:MaxLength=15
	DefaultRouteInterface string `json:"defaultRouteInterface,omitempty"`
	// PolicyRouting gives the interface its own table and rules, so replies leave by the
	// NIC the request came in on (default true).
	// +optional
	PolicyRouting *bool `json:"policyRouting,omitempty"`
	// TableBase numbers the tables: interface netN gets TableBase+N (0: 100).
	// +optional
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=1073741824
	TableBase int32 `json:"tableBase,omitempty"`
	// RPFilter is the pod's IPv4 rp_filter with policy routing: 0 off, 1 strict, 2 loose
	// (default), -1 left as the runtime set it.
	// +optional
	// +kubebuilder:validation:Minimum=-1
	// +kubebuilder:validation:Maximum=2
	RPFilter *int32 `json:"rpFilter,omitempty"`
}

// NetworkRoute is one route of the network: Route's fields, bounded so the API server
// can cost its rules.
// +kubebuilder:validation:XValidation:rule="!has(self.gw) || !isIP(self.gw) || !isCIDR(self.dst) || ip(self.gw).family() == cidr(self.dst).ip().family()",message="gw and dst must be of one family: an IPv4 gw for an IPv4 dst, an IPv6 gw for an IPv6 dst"
type NetworkRoute struct {
	// Dst is the destination CIDR, e.g. 10.0.0.0/8 or fd00::/8; one route per dst.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=49
	// +kubebuilder:validation:XValidation:rule="isCIDR(self)",message="must be a CIDR such as 10.0.0.0/8 or fd00::/8"
	Dst string `json:"dst"`
	// Gw is the next hop, on the subnet of the pod's address of its family; empty: the
	// destination is on-link.
	// +optional
	// +kubebuilder:validation:MaxLength=45
	// +kubebuilder:validation:XValidation:rule="isIP(self)",message="must be an IP address such as 10.250.1.1, or left out for an on-link route"
	Gw string `json:"gw,omitempty"`
}

// NetworkHostConnectivity joins a pod to its own node with a veth pair.
type NetworkHostConnectivity struct {
	// Enabled: unset is automatic (on for macvlan and ipvlan when this interface holds
	// the pod's default route); true always; false never.
	// +optional
	Enabled *bool `json:"enabled,omitempty"`
	// NodeAddresses the pod reaches through the veth; empty: the node's own, read at ADD.
	// +optional
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=45
	// +kubebuilder:validation:items:XValidation:rule="isIP(self)",message="must be an IP address such as 192.168.1.10"
	NodeAddresses []string `json:"nodeAddresses,omitempty"`
	// ServiceCIDRs are routed via the node, e.g. 10.96.0.0/12.
	// +optional
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=49
	// +kubebuilder:validation:items:XValidation:rule="isCIDR(self)",message="must be a CIDR such as 10.96.0.0/12"
	ServiceCIDRs []string `json:"serviceCIDRs,omitempty"`
	// ClusterCIDRs are routed via the node, e.g. the overlay's pod CIDR.
	// +optional
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=49
	// +kubebuilder:validation:items:XValidation:rule="isCIDR(self)",message="must be a CIDR such as 10.244.0.0/16"
	ClusterCIDRs []string `json:"clusterCIDRs,omitempty"`
}

// NetworkChecks are the underlay checks of ADD.
type NetworkChecks struct {
	// IPConflict probes the address before using it (default true).
	// +optional
	IPConflict *bool `json:"ipConflict,omitempty"`
	// Gateway fails ADD when the pool's gateway does not answer (default false).
	// +optional
	Gateway *bool `json:"gateway,omitempty"`
	// Announce sends a gratuitous ARP / unsolicited NA once the address is up (default true).
	// +optional
	Announce *bool `json:"announce,omitempty"`
	// Timeout is each probe's window, a Go duration from 1ms to 10s (default "30ms" for
	// the conflict probe, "100ms" for the gateway).
	// +optional
	// +kubebuilder:validation:MaxLength=32
	Timeout string `json:"timeout,omitempty"`
}

// NetworkRDMA asks for the RDMA device behind the pod's link.
type NetworkRDMA struct {
	// Mode is the kernel's RDMA netns mode the nodes run: exclusive moves the device into
	// the pod, shared only checks it exists.
	// +kubebuilder:validation:Enum=exclusive;shared
	Mode string `json:"mode"`
	// ResourceName is the RDMA shared device plugin's resource for a macvlan or ipvlan
	// network (e.g. rdma/hca_shared_devices_a): it goes into the
	// NetworkAttachmentDefinition's k8s.v1.cni.cncf.io/resourceName.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[^\s/]+/[^\s/]+$`
	ResourceName string `json:"resourceName,omitempty"`
}

// UnderlayNetworkStatus says what the controller wrote.
type UnderlayNetworkStatus struct {
	// ObservedGeneration is the generation the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// NetworkAttachmentDefinitions the controller wrote as the spec renders them,
	// "namespace/name", sorted.
	// +optional
	NetworkAttachmentDefinitions []string `json:"networkAttachmentDefinitions,omitempty"`
	// Conditions: Ready (see the NetworkReady constants).
	// +optional
	// +listType=map
	// +listMapKey=type
	// +patchStrategy=merge
	// +patchMergeKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty" patchStrategy:"merge" patchMergeKey:"type"`
}

// UnderlayNetwork is an underlay network the controller turns into
// NetworkAttachmentDefinitions, one per target namespace, and keeps them as it says.
// +kubebuilder:object:root=true
// +kubebuilder:resource:scope=Cluster,shortName=unet,categories=underpool
// +kubebuilder:subresource:status
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`
// +kubebuilder:printcolumn:name="Namespaces",type=string,JSONPath=`.spec.namespaces`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type UnderlayNetwork struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   UnderlayNetworkSpec   `json:"spec"`
	Status UnderlayNetworkStatus `json:"status,omitempty"`
}

// UnderlayNetworkList is a list of UnderlayNetworks.
// +kubebuilder:object:root=true
type UnderlayNetworkList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []UnderlayNetwork `json:"items"`
}

// NADName is the name of the NetworkAttachmentDefinitions the network renders into.
func (n *UnderlayNetwork) NADName() string {
	if n.Spec.NADName != "" {
		return n.Spec.NADName
	}
	return n.Name
}

// NetworkLabel, on a generated NetworkAttachmentDefinition, names its UnderlayNetwork:
// the controller finds and caches its NADs by it. Ownership is the controller
// ownerReference, never the label (anyone may write a label).
const NetworkLabel = "underpool.io/network"

// NetworkGenerationAnnotation, on a generated NetworkAttachmentDefinition, is the
// UnderlayNetwork generation it was rendered from: a NAD that differs from what that
// same generation renders was edited by hand.
const NetworkGenerationAnnotation = "underpool.io/network-generation"

// NetworkReady is the UnderlayNetwork condition: True when every target namespace holds
// the NetworkAttachmentDefinition as the spec renders it.
const NetworkReady = "Ready"

// Reasons of the Ready condition of an UnderlayNetwork.
const (
	NetworkSynced            = "Synced"
	NetworkNADNotOwned       = "NADNotOwned"
	NetworkNamespaceNotFound = "NamespaceNotFound"
	NetworkInvalidSpec       = "InvalidSpec"
	NetworkWriteFailed       = "WriteFailed"
	NetworkNADKindMissing    = "NADKindMissing"
)
