package webhook

import (
	"context"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	v1 "github.com/underpool/underpool/api/v1"
)

func TestValidatePool(t *testing.T) {
	existing := []v1.IPPool{pool("a", "10.250.1.0/24", "10.250.1.10-10.250.1.50"), pool("wide", "10.250.0.0/16", "10.250.9.0-10.250.9.255")}
	cases := []struct {
		name string
		p    v1.IPPool
		want string
	}{
		{"disjoint ranges of one subnet", pool("b", "10.250.1.0/24", "10.250.1.51-10.250.1.90"), ""},
		{"overlap", pool("b", "10.250.1.0/24", "10.250.1.40-10.250.1.60"), "overlaps IPPool a (subnet 10.250.1.0/24) at 10.250.1.40"},
		{"overlap across prefixes", pool("c", "10.250.9.0/24"), "overlaps IPPool wide"},
		{"address outside subnet", pool("d", "10.250.2.0/24", "10.250.3.1"), "spec.ips[0]"},
		{"bad gateway", v1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: "e"}, Spec: v1.IPPoolSpec{Subnet: "10.250.4.0/24", Gateway: "10.250.5.1"}}, "spec.gateway"},
	}
	for _, c := range cases {
		err := validatePool(&c.p, nil, "", existing)
		if (c.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), c.want)) {
			t.Errorf("%s: got %v, want %q", c.name, err, c.want)
		}
	}
	old, held := pool("a", "10.250.1.0/24", "10.250.1.10-10.250.1.50"), "12,40"
	shrunk := pool("a", "10.250.1.0/24", "10.250.1.10-10.250.1.20")
	if err := validatePool(&shrunk, &old, held, existing); err == nil || !strings.Contains(err.Error(), "10.250.1.40") {
		t.Errorf("removing an allocated address: %v", err)
	}
	moved := pool("a", "10.250.7.0/24")
	if err := validatePool(&moved, &old, held, existing); err == nil || !strings.Contains(err.Error(), "spec.subnet cannot change") {
		t.Errorf("moving an allocated pool: %v", err)
	}
	grown := pool("a", "10.250.1.0/24", "10.250.1.10-10.250.1.60")
	if err := validatePool(&grown, &old, held, nil); err != nil {
		t.Errorf("growing a pool: %v", err)
	}
}

func TestValidateSubnet(t *testing.T) {
	sub := func(cidr string) *v1.Subnet {
		return &v1.Subnet{ObjectMeta: metav1.ObjectMeta{Name: "s"}, Spec: v1.SubnetSpec{Subnet: cidr}}
	}
	pools := []v1.IPPool{pool("in", "10.250.1.0/24"), pool("out", "10.251.0.0/24")}
	if err := validateSubnet(sub("10.250.0.0/16"), sub("10.250.0.0/16"), pools, false); err != nil {
		t.Fatal(err)
	}
	if err := validateSubnet(sub("10.250.2.0/24"), sub("10.250.0.0/16"), pools, false); err == nil || !strings.Contains(err.Error(), "orphan IPPools in") {
		t.Errorf("shrinking below a pool: %v", err)
	}
	if err := validateSubnet(sub("10.250.0.0/16"), sub("10.250.0.0/16"), pools, true); err == nil || !strings.Contains(err.Error(), "deleting Subnet s") {
		t.Errorf("deleting with pools: %v", err)
	}
	if err := validateSubnet(sub("nope"), nil, nil, false); err == nil || !strings.Contains(err.Error(), "spec.subnet") {
		t.Errorf("bad subnet: %v", err)
	}
}

// Subnet routes are checked at admission: a typo would otherwise fail every ADD in the
// subnet, after the address was allocated. The error names the route and what is wrong.
func TestValidateSubnetRoutes(t *testing.T) {
	for _, tc := range []struct {
		name   string
		routes []v1.Route
		want   string
	}{
		{"good routes", []v1.Route{{Dst: "10.0.0.0/8", Gw: "10.250.1.1"}, {Dst: "192.168.0.0/16"}}, ""},
		{"dst not a CIDR", []v1.Route{{Dst: "10.0.0.0/8"}, {Dst: "10.0.0.0"}}, `spec.routes[1]: dst "10.0.0.0" is not a CIDR`},
		{"gw not an IP", []v1.Route{{Dst: "10.0.0.0/8", Gw: "10.250.1.x"}}, `spec.routes[0]: gw "10.250.1.x" is not an IP`},
		{"gw of another family", []v1.Route{{Dst: "10.0.0.0/8", Gw: "fd00::1"}}, "spec.routes[0]: gw fd00::1 and dst 10.0.0.0/8 are of different families"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &v1.Subnet{ObjectMeta: metav1.ObjectMeta{Name: "s"}, Spec: v1.SubnetSpec{Subnet: "10.250.1.0/24", Routes: tc.routes}}
			for _, old := range []*v1.Subnet{nil, s.DeepCopy()} { // create and update
				err := validateSubnet(s, old, nil, false)
				if (tc.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.want)) {
					t.Fatalf("got %v, want %q", err, tc.want)
				}
			}
		})
	}
}

// A pool whose state.allocated runs past its subnet (a hand repair's typo) is corrupt,
// not "holding" 400,000 addresses: the webhook lets its spec be changed (an application
// pool resized, a spec repaired) instead of refusing every update for addresses that
// cannot exist.
func TestWebhookAdmitsSpecChangesOfAPoolWhoseStateIsPastItsSubnet(t *testing.T) {
	for _, allocated := range []string{"1-400000", "0-4294967295"} {
		old := pool("a", "10.250.1.0/24", "10.250.1.10-10.250.1.50")
		for _, spec := range []v1.IPPool{pool("a", "10.250.1.0/24", "10.250.1.10-10.250.1.60"), pool("a", "10.250.1.0/24", "10.250.1.10-10.250.1.20")} {
			if err := validatePool(&spec, &old, allocated, nil); err != nil {
				t.Errorf("status %q, spec.ips %v: refused: %v", allocated, spec.Spec.IPs, err)
			}
		}
	}
}

// An update is checked against what the pool's PoolAllocation holds, read from the API:
// an allocated address may not be dropped; a pool with no PoolAllocation, or with one an
// earlier pool of its name left (another PoolUID), holds nothing.
func TestWebhookReadsAllocatedAddressesFromThePoolAllocation(t *testing.T) {
	ctx := context.Background()
	old := pool("a", "10.250.1.0/24", "10.250.1.10-10.250.1.50")
	old.UID = "uid-a"
	shrunk := *old.DeepCopy()
	shrunk.Spec.IPs = []string{"10.250.1.10-10.250.1.20"}
	stateOf := func(uid types.UID) *v1.PoolAllocation {
		a := v1.AllocationOf(&v1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: "a", UID: uid}})
		a.State.Allocated = "40"
		return a
	}
	for _, tc := range []struct {
		name   string
		objs   []client.Object
		refuse bool
	}{
		{"the pool's state holds 10.250.1.40", []client.Object{&old, stateOf("uid-a")}, true},
		{"no PoolAllocation", []client.Object{&old}, false},
		{"an earlier pool's state", []client.Object{&old, stateOf("uid-earlier")}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			api := fake.NewClientBuilder().WithScheme(testScheme(t)).WithObjects(tc.objs...).Build()
			v := &poolValidator{api: api, metrics: NewMetrics(nil)}
			_, err := v.ValidateUpdate(ctx, &old, &shrunk)
			if tc.refuse != (err != nil) || (err != nil && !strings.Contains(err.Error(), "10.250.1.40")) {
				t.Fatalf("got %v, want refused: %v", err, tc.refuse)
			}
		})
	}
}
