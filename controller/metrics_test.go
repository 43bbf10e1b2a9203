package controller

import (
	"context"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

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

// The controller's series go on the registry passed in and nowhere else: two sets live side
// by side in one process (a test's, a second controller's), the capacity series come from
// the reader each was given, and controller-runtime's global registry holds none of them
// unless a caller passes it (cmd/ipamd does).
func TestMetricsGoOnTheRegistryPassedIn(t *testing.T) {
	pool := &v1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: "p"}, Spec: v1.IPPoolSpec{Subnet: "10.9.0.0/24"}}
	withPools, without := prometheus.NewRegistry(), prometheus.NewRegistry()
	NewMetrics(withPools, fake.NewClientBuilder().WithScheme(testScheme(t)).WithObjects(pool).Build())
	NewMetrics(without, nil)
	if n, err := testutil.GatherAndCount(withPools, "underpool_ippool_total_addresses", "underpool_controller_leader"); err != nil || n != 2 {
		t.Fatalf("%d series of the pool's capacity and the leader flag on the registry passed in (%v), want 2", n, err)
	}
	if n, err := testutil.GatherAndCount(without, "underpool_ippool_total_addresses", "underpool_controller_leader"); err != nil || n != 1 {
		t.Fatalf("%d series without a pool reader (%v), want the leader flag alone", n, err)
	}
	families, err := metrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if strings.HasPrefix(f.GetName(), "underpool_") {
			t.Errorf("%s is on controller-runtime's global registry: nothing passed it", f.GetName())
		}
	}
}
