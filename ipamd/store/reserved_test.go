package store_test

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"

	"go.uber.org/zap"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/core/allocator"
	"github.com/underpool/underpool/ipamd/store"
)

// A ReservedIP listing that fails must fail the allocation: an empty reserved set would
// hand out the reserved addresses.
func TestReservedIPListingErrorFailsTheAllocation(t *testing.T) {
	scheme := runtime.NewScheme()
	if err := v1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	pool := &v1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: "p", Finalizers: []string{v1.PoolProtection}}, Spec: v1.IPPoolSpec{Subnet: "10.0.0.0/24", IPs: []string{"10.0.0.10-10.0.0.11"}}}
	reserved := &v1.ReservedIP{ObjectMeta: metav1.ObjectMeta{Name: "r"}, Spec: v1.ReservedIPSpec{IPs: []string{"10.0.0.10"}}}
	api := fake.NewClientBuilder().WithScheme(scheme).WithStatusSubresource(&v1.IPPool{}).WithObjects(pool, reserved).Build()
	failing := true
	cache := interceptor.NewClient(api, interceptor.Funcs{List: func(ctx context.Context, c client.WithWatch, list client.ObjectList, opts ...client.ListOption) error {
		if _, ok := list.(*v1.ReservedIPList); ok && failing {
			return errors.New("informer not synced")
		}
		return c.List(ctx, list, opts...)
	}})
	pools := store.NewPoolCommitter(api, cache, api, store.ReservedIPs(cache, zap.NewNop()), zap.NewNop(), nil)
	if addr, _, err := allocateExt(pools, context.Background(), "p"); err == nil {
		t.Fatalf("handed out %s without knowing the reservations", addr)
	}
	failing = false
	addr, _, err := allocateExt(pools, context.Background(), "p")
	if err != nil || addr.Addr() != netip.MustParseAddr("10.0.0.11") {
		t.Fatalf("with the listing back: %v %v, want 10.0.0.11 (10.0.0.10 is reserved)", addr, err)
	}
	if _, _, err := allocateExt(pools, context.Background(), "p"); !errors.Is(err, allocator.ErrExhausted) {
		t.Fatalf("the reserved address was handed out: %v", err)
	}
}

func allocateExt(p *store.PoolCommitter, ctx context.Context, pool string) (netip.Prefix, *allocator.PoolView, error) {
	g, err := p.Allocate(ctx, pool)
	return g.Addr, g.Pool, err
}

// Issue 17, finding 3: ["10.0.0.10", "10.0.0.30-10.0.0.20"] passed the CRD's rule, and the
// reversed range made the store ignore the whole object: the router at .10 was handed out.
// Every good entry stays reserved, and the reversed range reserves what lies between its
// ends (fail closed); an IPv4-mapped entry reserves the IPv4 address.
func TestABadReservedIPEntryKeepsTheGoodOnesReserved(t *testing.T) {
	scheme := runtime.NewScheme()
	if err := v1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	pool := &v1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: "p", Finalizers: []string{v1.PoolProtection}}, Spec: v1.IPPoolSpec{Subnet: "10.0.0.0/24", IPs: []string{"10.0.0.10-10.0.0.31"}}}
	reserved := &v1.ReservedIP{ObjectMeta: metav1.ObjectMeta{Name: "r"},
		Spec: v1.ReservedIPSpec{IPs: []string{"10.0.0.10", "10.0.0.30-10.0.0.20", "bogus", "::ffff:10.0.0.31"}}}
	api := fake.NewClientBuilder().WithScheme(scheme).WithStatusSubresource(&v1.IPPool{}).WithObjects(pool, reserved).Build()
	pools := store.NewPoolCommitter(api, api, api, store.ReservedIPs(api, zap.NewNop()), zap.NewNop(), nil)
	var got []string
	for {
		addr, _, err := allocateExt(pools, context.Background(), "p")
		if errors.Is(err, allocator.ErrExhausted) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, addr.Addr().String())
	}
	want := []string{"10.0.0.11", "10.0.0.12", "10.0.0.13", "10.0.0.14", "10.0.0.15", "10.0.0.16", "10.0.0.17", "10.0.0.18", "10.0.0.19"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("handed out %v, want %v: .10 and .31 are reserved, and so is .20-.30 (the reversed range)", got, want)
	}
}
