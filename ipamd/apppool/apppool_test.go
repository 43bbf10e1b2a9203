package apppool

import (
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	v1 "github.com/underpool/underpool/ipamd/api/v1"
)

func TestSizeAndAnnotations(t *testing.T) {
	for _, c := range []struct {
		v    string
		want int
		err  string
	}{{"", 3, ""}, {"+2", 5, ""}, {"7", 7, ""}, {"2", 0, "fewer addresses"}, {"x", 0, AnnotationIPNumber}, {"-1", 0, AnnotationIPNumber}} {
		got, err := Size(map[string]string{AnnotationIPNumber: c.v}, 3)
		if got != c.want || (c.err == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), c.err)) {
			t.Errorf("Size(%q) = %d, %v", c.v, got, err)
		}
	}
	if _, _, err := ParseSubnets(map[string]string{AnnotationSubnet: `{"ipv4":"s"}`}); err == nil || !strings.Contains(err.Error(), AnnotationSubnet) {
		t.Errorf("bad subnet annotation: %v", err)
	}
	s, ok, err := ParseSubnets(map[string]string{AnnotationSubnet: `{"ipv6":["s6"]}`})
	if !ok || err != nil || s.First(v1.IPv6) != "s6" || s.First(v1.IPv4) != "" {
		t.Errorf("ParseSubnets = %+v %v %v", s, ok, err)
	}
	if _, err := Reclaim(map[string]string{AnnotationReclaim: "maybe"}); err == nil {
		t.Error("reclaim maybe accepted")
	}
}

func TestWorkloadOf(t *testing.T) {
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Labels: map[string]string{"pod-template-hash": "5d9f"},
		OwnerReferences: []metav1.OwnerReference{{Kind: "ReplicaSet", Name: "web-5d9f", Controller: ptr.To(true)}}}}
	if w, ok := WorkloadOf(pod); !ok || w != (Workload{"Deployment", "ns", "web"}) {
		t.Fatalf("deployment pod: %+v %v", w, ok)
	}
	pod.OwnerReferences[0] = metav1.OwnerReference{Kind: "StatefulSet", Name: "db", Controller: ptr.To(true)}
	if w, ok := WorkloadOf(pod); !ok || w.Kind != "StatefulSet" || w.Name != "db" {
		t.Fatalf("statefulset pod: %+v", w)
	}
	w := Workload{"Deployment", "ns", strings.Repeat("x", 300)}
	if n := w.PoolName(v1.IPv4); len(n) > 253 || !strings.HasSuffix(n, "-v4") {
		t.Fatalf("pool name %q", n)
	}
}

func TestCarveGrowsAndShrinksAroundOthersAndHeld(t *testing.T) {
	subnet := &v1.Subnet{ObjectMeta: metav1.ObjectMeta{Name: "s"}, Spec: v1.SubnetSpec{Subnet: "10.250.1.0/24", Gateway: "10.250.1.1", ExcludeIPs: []string{"10.250.1.5"}}}
	others := []v1.IPPool{{ObjectMeta: metav1.ObjectMeta{Name: "other"}, Spec: v1.IPPoolSpec{Subnet: "10.250.1.0/24", IPs: []string{"10.250.1.2-10.250.1.3"}}}}
	ips, err := Carve(subnet, others, nil, 4)
	if err != nil || strings.Join(ips, ",") != "10.250.1.4,10.250.1.6-10.250.1.8" {
		t.Fatalf("new pool = %v %v", ips, err)
	}
	cur := &v1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: "app"}, Spec: v1.IPPoolSpec{Subnet: "10.250.1.0/24", IPs: ips}}
	cur.Status.Allocated = "8" // 10.250.1.8 is held
	if ips, err = Carve(subnet, append(others, *cur), cur, 6); err != nil || strings.Join(ips, ",") != "10.250.1.4,10.250.1.6-10.250.1.10" {
		t.Fatalf("grown = %v %v", ips, err)
	}
	if ips, err = Carve(subnet, others, cur, 2); err != nil || strings.Join(ips, ",") != "10.250.1.4,10.250.1.8" {
		t.Fatalf("shrunk keeping the held address = %v %v", ips, err)
	}
	if _, err = Carve(subnet, others, nil, 300); err == nil || !strings.Contains(err.Error(), "are free") {
		t.Fatalf("oversized: %v", err)
	}
}

func TestParseAllPerInterface(t *testing.T) {
	a := map[string]string{
		AnnotationSubnet:  `{"ipv4":["default-sub"]}`,
		AnnotationSubnets: `[{"interface":"net2","ipv4":["s2"],"ipv6":["s6"]}]`,
	}
	all, ok, err := ParseAll(a)
	if !ok || err != nil {
		t.Fatal(ok, err)
	}
	if s, ok := all.For("net2"); !ok || s.First(v1.IPv4) != "s2" || s.First(v1.IPv6) != "s6" {
		t.Fatalf("net2 = %+v", s)
	}
	if s, ok := all.For("net1"); !ok || s.First(v1.IPv4) != "default-sub" {
		t.Fatalf("net1 falls back to the subnet annotation: %+v", s)
	}
	for _, bad := range []string{`[{"ipv4":["s"]}]`, `[{"interface":"net1"}]`, `[{"interface":"net1","ipv4":["a"]},{"interface":"net1","ipv4":["b"]}]`, `{`} {
		if _, _, err := ParseAll(map[string]string{AnnotationSubnets: bad}); err == nil || !strings.Contains(err.Error(), AnnotationSubnets) {
			t.Errorf("%s: %v", bad, err)
		}
	}
	w := Workload{"Deployment", "ns", "web"}
	if w.PoolNameFor("net2", v1.IPv4) == w.PoolName(v1.IPv4) || !strings.HasSuffix(w.PoolNameFor("net2", v1.IPv4), "-net2-v4") {
		t.Fatalf("per-interface pool name %q", w.PoolNameFor("net2", v1.IPv4))
	}
}

func TestAbsurdIPNumberIsRefusedQuickly(t *testing.T) {
	start := time.Now()
	for _, v := range []string{"1000000000000", "+1000000000000", "99999999999999999999999", "65537", "+65534"} {
		_, err := Size(map[string]string{AnnotationIPNumber: v}, 3)
		if err == nil || !strings.Contains(err.Error(), AnnotationIPNumber) || !strings.Contains(err.Error(), "65536") {
			t.Errorf("Size(%q) = %v, want a refusal naming the annotation and the limit", v, err)
		}
	}
	if n, err := Size(map[string]string{AnnotationIPNumber: "65536"}, 3); err != nil || n != MaxIPNumber {
		t.Errorf("the limit itself: %d %v", n, err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("refusing took %s", d)
	}
}

// A pool carved before the limit existed (10^12 IPv6 addresses) shrinks to its replicas
// ("+0") in run steps, and a large allowed size is carved without a per-address loop.
func TestCarveCostFollowsRunsNotAddresses(t *testing.T) {
	subnet := &v1.Subnet{ObjectMeta: metav1.ObjectMeta{Name: "s6"}, Spec: v1.SubnetSpec{Subnet: "fd00:9::/64"}}
	start := time.Now()
	ips, err := Carve(subnet, nil, nil, MaxIPNumber)
	if err != nil || strings.Join(ips, ",") != "fd00:9::1-fd00:9::1:0" {
		t.Fatalf("carving %d: %v %v", MaxIPNumber, ips, err)
	}
	huge := &v1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: "app"},
		Spec: v1.IPPoolSpec{Subnet: "fd00:9::/64", IPs: []string{"fd00:9::1-fd00:9::e8:d4a5:1000"}}} // 10^12 addresses
	huge.Status.Allocated = "5,999999999000" // held: kept whatever the size
	ips, err = Carve(subnet, []v1.IPPool{*huge}, huge, 3)
	if err != nil || strings.Join(ips, ",") != "fd00:9::1,fd00:9::5,fd00:9::e8:d4a5:c18" {
		t.Fatalf("shrinking 10^12 to 3: %v %v", ips, err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("carving took %s: cost must follow runs, not addresses", d)
	}
	if _, err := Carve(subnet, nil, nil, MaxIPNumber+1); err == nil || !strings.Contains(err.Error(), AnnotationIPNumber) {
		t.Fatalf("over the limit: %v", err)
	}
}
