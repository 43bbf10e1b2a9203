package allocator

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	v1 "github.com/underpool/underpool/api/v1"
)

func TestRunSetAddRemoveRoundTrip(t *testing.T) {
	var s RunSet
	for _, x := range []uint64{5, 3, 4, 10, 12, 11, 1} {
		if !s.Add(x) {
			t.Fatalf("Add(%d) reported present", x)
		}
	}
	if s.Add(4) {
		t.Fatal("Add(4) twice reported absent")
	}
	if got := s.String(); got != "1,3-5,10-12" {
		t.Fatalf("String() = %q", got)
	}
	if !s.Remove(11) || s.Remove(11) {
		t.Fatal("Remove(11) not idempotent")
	}
	if got := s.String(); got != "1,3-5,10,12" {
		t.Fatalf("after Remove: %q", got)
	}
	back, err := ParseRunSet(s.String())
	if err != nil || back.String() != s.String() || back.Count() != 6 {
		t.Fatalf("ParseRunSet round trip = %q, %v", back.String(), err)
	}
	for _, bad := range []string{"x", "5-3", "1,,2", "-1"} {
		if _, err := ParseRunSet(bad); err == nil {
			t.Errorf("ParseRunSet(%q) accepted", bad)
		}
	}
}

func TestRunSetSubtractAndNextFree(t *testing.T) {
	s := NewRunSet(Run{0, 100})
	d := s.Subtract(NewRunSet(Run{0, 0}, Run{10, 20}, Run{100, 200}))
	if got := d.String(); got != "1-9,21-99" {
		t.Fatalf("Subtract = %q", got)
	}
	taken := NewRunSet(Run{1, 9}, Run{21, 50})
	if x, ok := d.NextFree(0, taken); !ok || x != 51 {
		t.Fatalf("NextFree = %d,%v want 51", x, ok)
	}
	// wraps around to the start when nothing is free after the cursor
	if x, ok := d.NextFree(60, NewRunSet(Run{60, 99}, Run{1, 4})); !ok || x != 5 {
		t.Fatalf("NextFree wrap = %d,%v want 5", x, ok)
	}
	if _, ok := d.NextFree(0, NewRunSet(Run{0, 1000})); ok {
		t.Fatal("NextFree found an address in a full set")
	}
}

func TestNewPoolErrorsNameTheField(t *testing.T) {
	cases := []struct {
		spec  v1.IPPoolSpec
		field string
	}{
		{v1.IPPoolSpec{Subnet: "10.250.1.0"}, "spec.subnet"},
		{v1.IPPoolSpec{Subnet: "fd00:250::/48"}, "spec.subnet"},
		{v1.IPPoolSpec{Subnet: "10.250.1.0/24", Gateway: "10.250.2.1"}, "spec.gateway"},
		{v1.IPPoolSpec{Subnet: "10.250.1.0/24", IPs: []string{"10.250.1.9-10.250.1.3"}}, "spec.ips[0]"},
		{v1.IPPoolSpec{Subnet: "10.250.1.0/24", IPs: []string{"10.250.1.1", "10.250.3.1"}}, "spec.ips[1]"},
		{v1.IPPoolSpec{Subnet: "10.250.1.0/24", ExcludeIPs: []string{"nope"}}, "spec.excludeIPs[0]"},
	}
	for _, c := range cases {
		_, err := NewPool("p", &c.spec)
		if err == nil || !strings.Contains(err.Error(), c.field) {
			t.Errorf("NewPool(%+v) error %v does not name %s", c.spec, err, c.field)
		}
	}
}

func TestPoolUsableExcludesNetworkBroadcastGateway(t *testing.T) {
	p, err := NewPool("p", &v1.IPPoolSpec{Subnet: "10.250.1.0/29", Gateway: "10.250.1.1", ExcludeIPs: []string{"10.250.1.4"}})
	if err != nil {
		t.Fatal(err)
	}
	if got := p.Usable.String(); got != "2-3,5-6" || p.TotalCount() != 4 {
		t.Fatalf("usable = %q total %d", got, p.TotalCount())
	}
	st := &State{Pool: p}
	var got []string
	for {
		a, err := st.Allocate(RunSet{})
		if errors.Is(err, ErrExhausted) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, a.String())
	}
	if strings.Join(got, " ") != "10.250.1.2/29 10.250.1.3/29 10.250.1.5/29 10.250.1.6/29" {
		t.Fatalf("allocated %v", got)
	}
	if !st.Release(netip.MustParseAddr("10.250.1.3")) || st.Release(netip.MustParseAddr("10.250.1.3")) {
		t.Fatal("release not idempotent")
	}
	if a, err := st.Allocate(RunSet{}); err != nil || a.Addr().String() != "10.250.1.3" {
		t.Fatalf("re-allocate = %v %v", a, err)
	}
}

func TestIPv6SlashSixtyFourIsNeverEnumerated(t *testing.T) {
	p, err := NewPool("v6", &v1.IPPoolSpec{Subnet: "fd00:250::/64", Gateway: "fd00:250::1"})
	if err != nil {
		t.Fatal(err)
	}
	if p.Usable.Count() != ^uint64(0)-1 {
		t.Fatalf("count = %d", p.Usable.Count())
	}
	st := &State{Pool: p, Cursor: ^uint64(0) - 1}
	a, err := st.Allocate(RunSet{})
	if err != nil || a.String() != "fd00:250::ffff:ffff:ffff:fffe/64" {
		t.Fatalf("last address = %v %v", a, err)
	}
	// IPv6 has no broadcast: the very last address is usable
	if a, err = st.Allocate(RunSet{}); err != nil || a.Addr().String() != "fd00:250::ffff:ffff:ffff:ffff" {
		t.Fatalf("last = %v %v", a, err)
	}
	// the cursor wrapped: next comes from the start, skipping anycast and gateway
	if a, err = st.Allocate(RunSet{}); err != nil || a.Addr().String() != "fd00:250::2" {
		t.Fatalf("wrapped = %v %v", a, err)
	}
	if _, err := st.AllocateExact(netip.MustParseAddr("fd00:250::2"), RunSet{}); err == nil {
		t.Fatal("exact allocation of a held address succeeded")
	}
	if _, err := st.AllocateExact(netip.MustParseAddr("fd00:250::abcd"), RunSet{}); err != nil {
		t.Fatal(err)
	}
	if got := st.Allocated.String(); got != "2,43981,18446744073709551614-18446744073709551615" {
		t.Fatalf("allocated runs %q", got)
	}
}

func TestAllocationSkipsBlocked(t *testing.T) {
	p, _ := NewPool("p", &v1.IPPoolSpec{Subnet: "10.250.1.0/24", IPs: []string{"10.250.1.10-10.250.1.12"}})
	st := &State{Pool: p}
	blocked, _ := ParseRanges(p.Prefix, []string{"10.250.1.10-10.250.1.11"}, "reserved")
	a, err := st.Allocate(blocked)
	if err != nil || a.Addr().String() != "10.250.1.12" {
		t.Fatalf("got %v %v", a, err)
	}
	if _, err := st.Allocate(blocked); !errors.Is(err, ErrExhausted) {
		t.Fatalf("want exhausted, got %v", err)
	}
}

func BenchmarkAllocateSlash16VsSlash24(b *testing.B) {
	for _, subnet := range []string{"10.250.0.0/24", "10.250.0.0/16"} {
		b.Run(subnet, func(b *testing.B) {
			p, _ := NewPool("p", &v1.IPPoolSpec{Subnet: subnet})
			st := &State{Pool: p}
			for i := 0; i < 200; i++ { // a fragmented, half-used front of the pool
				a, _ := st.Allocate(RunSet{})
				if i%2 == 0 {
					st.Release(a.Addr())
				}
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				a, err := st.Allocate(RunSet{})
				if err != nil {
					b.Fatal(err)
				}
				st.Release(a.Addr())
			}
		})
	}
}
