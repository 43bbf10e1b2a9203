package apppool

import (
	"errors"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/underpool/underpool/api/v1"
)

func TestLongWorkloadNamesMakeValidPoolNames(t *testing.T) {
	w := Workload{"Deployment", "ns", strings.Repeat("x", 300)}
	if n := w.PoolName(v1.IPv4); len(n) > 253 || !strings.HasSuffix(n, "-v4") {
		t.Fatalf("pool name %q", n)
	}
}

func TestCarveGrowsAndShrinksAroundOthersAndHeld(t *testing.T) {
	subnet := &v1.Subnet{ObjectMeta: metav1.ObjectMeta{Name: "s"}, Spec: v1.SubnetSpec{Subnet: "10.250.1.0/24", Gateway: "10.250.1.1", ExcludeIPs: []string{"10.250.1.5"}}}
	others := []v1.IPPool{{ObjectMeta: metav1.ObjectMeta{Name: "other"}, Spec: v1.IPPoolSpec{Subnet: "10.250.1.0/24", IPs: []string{"10.250.1.2-10.250.1.3"}}}}
	ips, err := Carve(subnet, others, nil, "", 4)
	if err != nil || strings.Join(ips, ",") != "10.250.1.4,10.250.1.6-10.250.1.8" {
		t.Fatalf("new pool = %v %v", ips, err)
	}
	cur := &v1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: "app"}, Spec: v1.IPPoolSpec{Subnet: "10.250.1.0/24", IPs: ips}}
	held := "8" // its state holds 10.250.1.8
	if ips, err = Carve(subnet, append(others, *cur), cur, held, 6); err != nil || strings.Join(ips, ",") != "10.250.1.4,10.250.1.6-10.250.1.10" {
		t.Fatalf("grown = %v %v", ips, err)
	}
	if ips, err = Carve(subnet, others, cur, held, 2); err != nil || strings.Join(ips, ",") != "10.250.1.4,10.250.1.8" {
		t.Fatalf("shrunk keeping the held address = %v %v", ips, err)
	}
	var noRoom *NoRoomError
	if _, err = Carve(subnet, others, nil, "", 300); !errors.As(err, &noRoom) || noRoom.Subnet != "s" || noRoom.Need != 300 || !strings.Contains(err.Error(), "are free") {
		t.Fatalf("oversized: %v", err)
	}
}

// An IPPool without spec.ips offers its whole subnet: a workload scaled to zero (or a
// DaemonSet before it counts its nodes) must not get such a pool, which would overlap
// every other pool of the Subnet and so block their addresses. It keeps one address.
func TestCarveNeverGivesAPoolOfNoAddresses(t *testing.T) {
	subnet := &v1.Subnet{ObjectMeta: metav1.ObjectMeta{Name: "s"}, Spec: v1.SubnetSpec{Subnet: "10.250.1.0/24", Gateway: "10.250.1.1"}}
	ips, err := Carve(subnet, nil, nil, "", 0)
	if err != nil || strings.Join(ips, ",") != "10.250.1.2" {
		t.Fatalf("a new pool of size 0 = %v %v, want one address", ips, err)
	}
	cur := &v1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: "app"}, Spec: v1.IPPoolSpec{Subnet: "10.250.1.0/24", IPs: []string{"10.250.1.2-10.250.1.5"}}}
	if ips, err = Carve(subnet, []v1.IPPool{*cur}, cur, "", 0); err != nil || strings.Join(ips, ",") != "10.250.1.2" {
		t.Fatalf("shrunk to 0 = %v %v, want its lowest address kept", ips, err)
	}
}

func TestPoolNamePerInterface(t *testing.T) {
	w := Workload{"Deployment", "ns", "web"}
	if w.PoolNameFor("net2", v1.IPv4) == w.PoolName(v1.IPv4) || !strings.HasSuffix(w.PoolNameFor("net2", v1.IPv4), "-net2-v4") {
		t.Fatalf("per-interface pool name %q", w.PoolNameFor("net2", v1.IPv4))
	}
}

// A pool carved before the limit existed (10^12 IPv6 addresses) shrinks to its replicas
// ("+0") in run steps, and a large allowed size is carved without a per-address loop.
func TestCarveCostFollowsRunsNotAddresses(t *testing.T) {
	subnet := &v1.Subnet{ObjectMeta: metav1.ObjectMeta{Name: "s6"}, Spec: v1.SubnetSpec{Subnet: "fd00:9::/64"}}
	start := time.Now()
	ips, err := Carve(subnet, nil, nil, "", v1.MaxAppPoolIPNumber)
	if err != nil || strings.Join(ips, ",") != "fd00:9::1-fd00:9::1:0" {
		t.Fatalf("carving %d: %v %v", v1.MaxAppPoolIPNumber, ips, err)
	}
	huge := &v1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: "app"},
		Spec: v1.IPPoolSpec{Subnet: "fd00:9::/64", IPs: []string{"fd00:9::1-fd00:9::e8:d4a5:1000"}}} // 10^12 addresses
	// its state holds these: kept whatever the size
	ips, err = Carve(subnet, []v1.IPPool{*huge}, huge, "5,999999999000", 3)
	if err != nil || strings.Join(ips, ",") != "fd00:9::1,fd00:9::5,fd00:9::e8:d4a5:c18" {
		t.Fatalf("shrinking 10^12 to 3: %v %v", ips, err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("carving took %s: cost must follow runs, not addresses", d)
	}
	if _, err := Carve(subnet, nil, nil, "", v1.MaxAppPoolIPNumber+1); err == nil || !strings.Contains(err.Error(), v1.AnnotationIPNumber) {
		t.Fatalf("over the limit: %v", err)
	}
}

// An application pool whose state.allocated runs past its subnet ("1-400000" or
// "0-4294967295" on a /24) cannot say which addresses its pods hold: it still grows, but
// shrinking drops none of its addresses until the state is repaired.
func TestCarveDropsNothingOfAPoolWhoseStateIsPastItsSubnet(t *testing.T) {
	subnet := &v1.Subnet{ObjectMeta: metav1.ObjectMeta{Name: "s"}, Spec: v1.SubnetSpec{Subnet: "10.250.1.0/24", Gateway: "10.250.1.1"}}
	for _, allocated := range []string{"1-400000", "0-4294967295"} {
		cur := &v1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: "app"}, Spec: v1.IPPoolSpec{Subnet: "10.250.1.0/24", IPs: []string{"10.250.1.2-10.250.1.5"}}}
		if ips, err := Carve(subnet, []v1.IPPool{*cur}, cur, allocated, 2); err != nil || strings.Join(ips, ",") != "10.250.1.2-10.250.1.5" {
			t.Errorf("status %q: shrunk to %v (%v), want every address kept", allocated, ips, err)
		}
		if ips, err := Carve(subnet, []v1.IPPool{*cur}, cur, allocated, 6); err != nil || strings.Join(ips, ",") != "10.250.1.2-10.250.1.7" {
			t.Errorf("status %q: grown to %v (%v), want two more", allocated, ips, err)
		}
	}
}
