package allocator

import (
	"strings"
	"testing"

	v1 "github.com/underpool/underpool/api/v1"
)

// poolFields is what a refusal of a pool spec may name.
var poolFields = []string{"spec.subnet", "spec.gateway", "spec.ips", "spec.excludeIPs", "spec.routes["}

// splitList turns a fuzzed string into a spec list (";" separates entries, none: nil).
func splitList(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ";")
}

// FuzzNewPool: no pool spec panics the parser, every refusal names its spec field, and
// an accepted pool hands out only addresses of its subnet that are neither the network,
// the IPv4 broadcast nor the gateway address, and maps offsets and addresses both ways.
func FuzzNewPool(f *testing.F) {
	f.Add("10.250.1.0/24", "10.250.1.1", "10.250.1.10-10.250.1.20;10.250.1.30", "10.250.1.15", "10.0.0.0/8", "10.250.1.254")
	f.Add("fd00:250::/64", "fd00:250::1", "", "fd00:250::2-fd00:250::ff", "::/0", "fd00:250::1")
	f.Add("10.250.1.0/31", "", "", "", "", "")
	f.Add("10.250.1.7/32", "", "", "", "", "")
	f.Add("10.250.1.0/24", "", "::ffff:10.250.1.5", "10.250.1.9-10.250.1.8", "10.0.0.0", "x")
	f.Add("fd00::/48", "", "", "", "", "")
	f.Add(" 10.250.1.0/24 ", "fe80::1%eth0", "10.250.2.1", "", "", "")
	f.Fuzz(func(t *testing.T, subnet, gateway, ips, excludes, dst, gw string) {
		spec := &v1.IPPoolSpec{Subnet: subnet, Gateway: gateway, IPs: splitList(ips), ExcludeIPs: splitList(excludes)}
		if dst != "" || gw != "" {
			spec.Routes = []v1.Route{{Dst: dst, Gw: gw}}
		}
		p, err := NewPool("fuzz", spec)
		if err != nil {
			for _, field := range poolFields {
				if strings.Contains(err.Error(), field) {
					return
				}
			}
			t.Fatalf("spec %+v: error %q names no spec field", spec, err)
		}
		last := lastOffset(p.Prefix)
		runs := p.Usable.Runs()
		if len(runs) > 0 && runs[len(runs)-1].Hi > last {
			t.Fatalf("spec %+v: usable %v beyond the subnet's last offset %d", spec, p.Usable, last)
		}
		if p.Usable.Contains(0) {
			t.Fatalf("spec %+v: the subnet's own address is usable", spec)
		}
		if p.Prefix.Addr().Is4() && p.Prefix.Bits() < 31 && p.Usable.Contains(last) {
			t.Fatalf("spec %+v: the broadcast address is usable", spec)
		}
		if p.Gateway.IsValid() {
			if o, ok := p.Offset(p.Gateway); !ok || p.Usable.Contains(o) {
				t.Fatalf("spec %+v: the gateway is usable or not in the subnet", spec)
			}
		}
		for _, r := range runs {
			for _, o := range []uint64{r.Lo, r.Hi} {
				a := p.Addr(o)
				if back, ok := p.Offset(a); !p.Prefix.Contains(a) || !ok || back != o {
					t.Fatalf("spec %+v: offset %d is %s, back %d %v", spec, o, a, back, ok)
				}
			}
		}
		if p.TotalCount() < 0 {
			t.Fatalf("spec %+v: total %d", spec, p.TotalCount())
		}
	})
}
