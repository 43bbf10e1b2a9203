package controller

import (
	"context"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	v1 "github.com/underpool/underpool/api/v1"
)

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
