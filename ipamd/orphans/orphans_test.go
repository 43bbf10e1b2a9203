package orphans

import (
	"context"
	"testing"
	"time"

	"go.uber.org/zap"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	v1 "github.com/underpool/underpool/ipamd/api/v1"
	"github.com/underpool/underpool/ipamd/store"
)

// An address the informer shows unheld but the API shows held (an Endpoint written a
// moment ago, not yet in the cache) is never freed; one unheld in the API too is, once it
// stayed unheld for the grace period.
func TestSweepConfirmsWithTheAPIBeforeFreeing(t *testing.T) {
	scheme := runtime.NewScheme()
	if err := v1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	pool := &v1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: "p"}, Spec: v1.IPPoolSpec{Subnet: "10.250.1.0/24"},
		Status: v1.IPPoolStatus{Allocated: "5-6", AllocatedIPCount: 2}}
	held := &v1.Endpoint{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "a"}, Status: v1.EndpointStatus{
		Interfaces: []v1.EndpointInterface{{ContainerID: "c", Interface: "net1", IPs: []v1.EndpointIP{{Address: "10.250.1.5/24", Pool: "p"}}}}}}
	api := fake.NewClientBuilder().WithScheme(scheme).WithStatusSubresource(&v1.IPPool{}).WithObjects(pool, held).Build()
	cache := fake.NewClientBuilder().WithScheme(scheme).WithObjects(pool.DeepCopy()).Build() // lags: no Endpoint yet
	s := &Sweeper{Cache: cache, API: api, Log: zap.NewNop(),
		Pools: store.NewPoolCommitter(api, api, api, nil, zap.NewNop(), nil)}
	now := time.Now()
	for _, at := range []time.Time{now, now.Add(time.Hour)} {
		if _, err := s.Sweep(context.Background(), at, time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	got := &v1.IPPool{}
	if err := api.Get(context.Background(), client.ObjectKey{Name: "p"}, got); err != nil {
		t.Fatal(err)
	}
	if got.Status.Allocated != "5" {
		t.Fatalf("pool allocated = %q, want only the held 10.250.1.5 (offset 5) left", got.Status.Allocated)
	}
}
