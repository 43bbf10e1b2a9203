package v1

// Route is one route handed to pods: destination CIDR and optional gateway.
type Route struct {
	// Dst is the destination CIDR, e.g. 10.0.0.0/8 or ::/0.
	// +kubebuilder:validation:MinLength=1
	Dst string `json:"dst"`
	// Gw is the next hop; empty means the destination is on-link.
	// +optional
	Gw string `json:"gw,omitempty"`
}

// IPFamily names an address family.
// +kubebuilder:validation:Enum=IPv4;IPv6
type IPFamily string

const (
	IPv4 IPFamily = "IPv4"
	IPv6 IPFamily = "IPv6"
)
