package netplan

import (
	"fmt"
	"net"
	"net/netip"
)

// MACFromIP builds a pod MAC from a two-byte prefix ("0a:58") and the last four bytes of
// the address, so that a pod's MAC follows its IP: neighbours' ARP caches and switch
// tables stay right when an address moves to a new pod, and an operator can tell the IP
// from a MAC in a capture. The prefix must be unicast; a locally administered prefix
// (second-lowest bit of the first byte set) avoids clashing with vendor MACs.
func MACFromIP(prefix string, ip netip.Addr) (net.HardwareAddr, error) {
	p, err := ParseMACPrefix(prefix)
	if err != nil {
		return nil, err
	}
	b := ip.As16()
	return net.HardwareAddr{p[0], p[1], b[12], b[13], b[14], b[15]}, nil
}

// ParseMACPrefix checks a MAC prefix of exactly two bytes.
func ParseMACPrefix(prefix string) ([2]byte, error) {
	hw, err := net.ParseMAC(prefix + ":00:00:00:00")
	if err != nil || len(hw) != 6 {
		return [2]byte{}, fmt.Errorf("macPrefix %q is not two hex bytes such as \"0a:58\"", prefix)
	}
	if hw[0]&1 != 0 {
		return [2]byte{}, fmt.Errorf("macPrefix %q is a multicast prefix (lowest bit of the first byte set): use e.g. \"0a:58\"", prefix)
	}
	return [2]byte{hw[0], hw[1]}, nil
}
