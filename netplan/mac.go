package netplan

import (
	"crypto/sha256"
	"fmt"
	"net"
	"net/netip"
)

// MACFromIP builds a pod MAC from a two-byte prefix ("0a:58") and four bytes of the
// address, so that a pod's MAC follows its IP: neighbours' ARP caches and switch tables
// stay right when an address moves to a new pod. For IPv4 the four bytes are the address
// itself, so an operator can tell the IP from a MAC in a capture. For IPv6 they are a hash
// of the whole address: its last four bytes alone repeat across /64s (fd00:1::5 and
// fd00:2::5 would share a MAC on one segment), and a hash spreads any two addresses apart
// but for a 1 in 2^32 chance. The prefix must be unicast; a locally administered prefix
// (second-lowest bit of the first byte set) avoids clashing with vendor MACs.
func MACFromIP(prefix string, ip netip.Addr) (net.HardwareAddr, error) {
	p, err := ParseMACPrefix(prefix)
	if err != nil {
		return nil, err
	}
	ip = ip.Unmap()
	if ip.Is4() {
		b := ip.As4()
		return net.HardwareAddr{p[0], p[1], b[0], b[1], b[2], b[3]}, nil
	}
	b := ip.As16()
	sum := sha256.Sum256(b[:])
	return net.HardwareAddr{p[0], p[1], sum[0], sum[1], sum[2], sum[3]}, nil
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
