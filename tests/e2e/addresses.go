package e2e

import (
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
)

// Reading addresses out of CNI results, errors and strings.

// IPsOf returns the result's addresses by family.
func IPsOf(t *testing.T, r types.Result) (v4, v6 []net.IP) {
	t.Helper()
	res, err := current.GetResult(r)
	if err != nil {
		t.Fatalf("result: %v", err)
	}
	for _, ip := range res.IPs {
		if ip.Address.IP.To4() != nil {
			v4 = append(v4, ip.Address.IP)
		} else {
			v6 = append(v6, ip.Address.IP)
		}
	}
	return v4, v6
}

// FirstIP returns the result's first address of a family.
func FirstIP(t *testing.T, r types.Result, v4 bool) string {
	t.Helper()
	a4, a6 := IPsOf(t, r)
	if v4 && len(a4) > 0 {
		return a4[0].String()
	}
	if !v4 && len(a6) > 0 {
		return a6[0].String()
	}
	t.Fatalf("no address of the family in %v", r)
	return ""
}

// AsCNIError reports whether err is (or wraps) a CNI error, as the plugin returns it.
func AsCNIError(err error, target **types.Error) bool { return errors.As(err, target) }

// ParseIP parses an address, failing the test if s is none.
func ParseIP(t *testing.T, s string) net.IP {
	t.Helper()
	ip := net.ParseIP(s)
	if ip == nil {
		t.Fatalf("%q is not an IP", s)
	}
	return ip
}

// MustPrefix parses an address with its prefix ("10.0.0.5/24"), failing the test if s is none.
func MustPrefix(t *testing.T, s string) netip.Prefix {
	t.Helper()
	p, err := netip.ParsePrefix(s)
	if err != nil {
		t.Fatalf("%q is not an address with its prefix: %v", s, err)
	}
	return p
}

// hostBits is the prefix length of a single address of addr's family: "/32" or "/128".
func hostBits(addr string) string {
	if strings.Contains(addr, ":") {
		return "/128"
	}
	return "/32"
}
