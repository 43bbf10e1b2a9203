package netplan

import (
	"fmt"
	"net/netip"
	"strconv"
)

// Route is one route of a pod interface or its host link. The zero Gw is on-link, the
// zero Src leaves the source to the kernel, Table 0 is the main table. Routes as
// operators write them (IPPool, Subnet, the pod annotation) carry only Dst and Gw; Src
// and Table are set by planning.
type Route struct {
	Dst   netip.Prefix
	Gw    netip.Addr
	Src   netip.Addr
	Table int
}

// ParseRoute reads a route written as strings; field names its source in errors
// (e.g. "IPPool p1 spec.routes[2]") so that a bad object is found without guessing.
func ParseRoute(dst, gw, field string) (Route, error) {
	d, err := netip.ParsePrefix(dst)
	if err != nil {
		return Route{}, fmt.Errorf("%s: dst %q is not a CIDR (e.g. 10.0.0.0/8)", field, dst)
	}
	r := Route{Dst: d.Masked()}
	if gw != "" {
		if r.Gw, err = netip.ParseAddr(gw); err != nil {
			return Route{}, fmt.Errorf("%s: gw %q is not an IP address", field, gw)
		}
		if r.Gw.Is4() != r.Dst.Addr().Is4() {
			return Route{}, fmt.Errorf("%s: gw %s and dst %s are of different families", field, gw, dst)
		}
	}
	return r, nil
}

// String reads like ip-route(8): "10.0.0.0/8 via 10.250.1.1 table 101".
func (r Route) String() string {
	s := r.Dst.String()
	if r.Gw.IsValid() {
		s += " via " + r.Gw.String()
	}
	if r.Table != 0 {
		s += " table " + strconv.Itoa(r.Table)
	}
	return s
}

func anyPrefix(is4 bool) netip.Prefix {
	if is4 {
		return netip.PrefixFrom(netip.IPv4Unspecified(), 0)
	}
	return netip.PrefixFrom(netip.IPv6Unspecified(), 0)
}
