package store_test

import (
	"context"
	"errors"
	"net/netip"
	"testing"

	"go.uber.org/zap"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	"github.com/underpool/underpool/ipamd/allocator"
	v1 "github.com/underpool/underpool/ipamd/api/v1"
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
