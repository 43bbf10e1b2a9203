package controller

import (
	"context"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	v1 "github.com/underpool/underpool/api/v1"
)

// Each refusal ValidatePool and ValidateSubnet make is counted under its own reason: the
// reasons come from their messages, so a reworded message must not fall into invalid_spec.
func TestWebhookRejectionReasons(t *testing.T) {
	held := &v1.IPPool{Spec: v1.IPPoolSpec{Subnet: "10.9.0.0/24"}, Status: v1.IPPoolStatus{Allocated: "5"}}
	held.Name = "held"
	other := v1.IPPool{Spec: v1.IPPoolSpec{Subnet: "10.9.0.0/24", IPs: []string{"10.9.0.10-10.9.0.20"}}}
	other.Name = "other"
	sub := &v1.Subnet{Spec: v1.SubnetSpec{Subnet: "10.9.0.0/16"}}
	sub.Name = "s"
	for _, c := range []struct {
		name string
		err  error
		want string
	}{
		{"overlap", ValidatePool(&v1.IPPool{Spec: v1.IPPoolSpec{Subnet: "10.9.0.0/24"}}, nil, []v1.IPPool{other}), "overlap"},
		{"subnet change while allocated", ValidatePool(&v1.IPPool{Spec: v1.IPPoolSpec{Subnet: "10.8.0.0/24"}}, held, nil), "removes_allocated"},
		{"range drops allocated", ValidatePool(&v1.IPPool{Spec: v1.IPPoolSpec{Subnet: "10.9.0.0/24", IPs: []string{"10.9.0.100-10.9.0.110"}}}, held, nil), "removes_allocated"},
		{"subnet delete orphans pools", ValidateSubnet(sub, sub, []v1.IPPool{other}, true), "orphans_pools"},
		{"bad spec", ValidatePool(&v1.IPPool{Spec: v1.IPPoolSpec{Subnet: "nonsense"}}, nil, nil), "invalid_spec"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if c.err == nil {
				t.Fatal("the validator admitted it")
			}
			if got := rejectionReason(c.err); got != c.want {
				t.Fatalf("reason of %q = %s, want %s", c.err, got, c.want)
			}
		})
	}
}

// The capacity series are read from the cache at scrape time: a deleted pool's and
// Subnet's series go with them.
func TestCapacitySeriesGoWithTheirPool(t *testing.T) {
	pool := &v1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: "p"}, Spec: v1.IPPoolSpec{Subnet: "10.9.0.0/24"}}
	subnet := &v1.Subnet{ObjectMeta: metav1.ObjectMeta{Name: "s"}, Spec: v1.SubnetSpec{Subnet: "10.9.0.0/16"}}
	c := fake.NewClientBuilder().WithScheme(testScheme(t)).WithObjects(pool, subnet).Build()
	collector := &capacity{c: c}
	if n := testutil.CollectAndCount(collector); n != 6 {
		t.Fatalf("%d capacity series for one pool and one Subnet, want 6", n)
	}
	if err := c.Delete(context.Background(), pool); err != nil {
		t.Fatal(err)
	}
	if err := c.Delete(context.Background(), subnet); err != nil {
		t.Fatal(err)
	}
	if n := testutil.CollectAndCount(collector); n != 0 {
		t.Fatalf("%d capacity series left after the pool and Subnet were deleted", n)
	}
}
