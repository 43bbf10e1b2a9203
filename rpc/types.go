// Package rpc is the wire contract between the CNI plugins and ipamd: JSON over HTTP on a
// unix socket, versioned by path (/v1/...). Both sides import these types so that they
// cannot drift apart, and the answer's strings are formatted and parsed here only
// (NewAllocateResponse, AllocateResponse.Allocation), into netplan's typed vocabulary.
package rpc

// DefaultSocket is where ipamd listens unless told otherwise.
const DefaultSocket = "/run/underpool/ipamd.sock"

// APIVersion is the socket API this build speaks, the first segment of every path. Plugin
// and daemon are upgraded node by node, one before the other: a change an older peer
// would misread (a field renamed, retyped or given a new meaning) takes a new version,
// served beside the old one until no plugin asks for it. Adding an optional answer field
// is not such a change: older plugins ignore it.
const APIVersion = "v1"

// Paths of the API, under /APIVersion/.
const (
	PathAllocate = "/" + APIVersion + "/allocate"
	PathRelease  = "/" + APIVersion + "/release"
	PathStatus   = "/" + APIVersion + "/status"
	PathGC       = "/" + APIVersion + "/gc"
)

// Pod identifies the pod an attachment belongs to (from the runtime's CNI_ARGS).
type Pod struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	UID       string `json:"uid,omitempty"`
}

// AllocateRequest asks for the addresses of one attachment. It is idempotent by
// (ContainerID, IfName): asking twice returns the same addresses.
type AllocateRequest struct {
	ContainerID string `json:"containerID"`
	IfName      string `json:"ifName"`
	Network     string `json:"network,omitempty"`
	Pod         Pod    `json:"pod"`
	// RequestedIPs are addresses the pod asks for (multus "ips" runtimeConfig, CIDR or plain).
	RequestedIPs []string `json:"requestedIPs,omitempty"`
	// LookupOnly asks what the attachment holds without allocating (CNI CHECK): an
	// attachment that holds nothing is an error (CodeNotHeld), never a new allocation.
	LookupOnly bool `json:"lookupOnly,omitempty"`
	// IPv4Pools and IPv6Pools are the candidate pools per family, in order of preference;
	// a family with no pools is not allocated.
	IPv4Pools []string `json:"ipv4Pools,omitempty"`
	IPv6Pools []string `json:"ipv6Pools,omitempty"`
}

// IPConfig is one allocated address.
type IPConfig struct {
	Address string `json:"address"` // CIDR with the pool's prefix length
	Gateway string `json:"gateway,omitempty"`
	Pool    string `json:"pool"`
	Vlan    int32  `json:"vlan,omitempty"`
}

// Route is a route for the pod; Gw empty means on-link.
type Route struct {
	Dst string `json:"dst"`
	Gw  string `json:"gw,omitempty"`
}

// AllocateResponse carries the addresses and routes of the attachment.
type AllocateResponse struct {
	IPs    []IPConfig `json:"ips"`
	Routes []Route    `json:"routes,omitempty"`
	// DefaultRouteInterface is the pod's default-route-nic annotation, when it has one.
	DefaultRouteInterface string `json:"defaultRouteInterface,omitempty"`
}

// ReleaseRequest frees what an attachment holds. An empty IfName releases every interface
// of the container. Releasing what is not held succeeds.
type ReleaseRequest struct {
	ContainerID string `json:"containerID"`
	IfName      string `json:"ifName,omitempty"`
	Pod         Pod    `json:"pod"`
	// Conflicts, sent when ADD found addresses already in use on the wire, keep those
	// addresses out of allocation for a while so that the retry gets others.
	Conflicts []Conflict `json:"conflicts,omitempty"`
}

// Conflict is an address another host answered for.
type Conflict struct {
	IP  string `json:"ip"`
	MAC string `json:"mac,omitempty"` // who answered
}

// GCRequest lists the attachments of one network that the runtime still has on this node;
// ipamd releases this node's other attachments of that network.
type GCRequest struct {
	Network string       `json:"network"`
	Valid   []Attachment `json:"valid"`
}

// Attachment names one (container, interface) pair.
type Attachment struct {
	ContainerID string `json:"containerID"`
	IfName      string `json:"ifName"`
}

// GCResponse says what the GC released.
type GCResponse struct {
	Released []Attachment `json:"released"`
}

// StatusResponse reports whether ipamd serves allocations.
type StatusResponse struct {
	Ready  bool   `json:"ready"`
	Node   string `json:"node"`
	Reason string `json:"reason,omitempty"`
}

// Error is the body of every non-2xx answer.
type Error struct {
	// Code is a CNI error code (types.Err*): 11 means try again later.
	Code    uint   `json:"code"`
	Message string `json:"message"`
	// Field names the request field or annotation at fault, when one is.
	Field string `json:"field,omitempty"`
}

func (e *Error) Error() string { return e.Message }
