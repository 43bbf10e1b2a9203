package store

import (
	"context"
	"testing"

	"go.uber.org/zap"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	v1 "github.com/underpool/underpool/api/v1"
)

// An address just freed is not handed out again by another node (or a restarted ipamd)
// while the rest of the pool is free: the round-robin cursor lives in the pool's status,
// one for every node. A sandbox still being torn down elsewhere keeps it on the wire for a
// moment; handing it out at once made the next pod's conflict probe fail.
func TestAFreedAddressIsNotHandedOutAgainAtOnceByAnotherNode(t *testing.T) {
	scheme := runtime.NewScheme()
	if err := v1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	pool := &v1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: "p", Finalizers: []string{v1.PoolProtection}}, Spec: v1.IPPoolSpec{Subnet: "10.250.1.0/24"}}
	api := fake.NewClientBuilder().WithScheme(scheme).WithStatusSubresource(&v1.IPPool{}).WithObjects(pool).Build()
	nodeA := NewPoolCommitter(api, api, api, nil, zap.NewNop(), nil)
	nodeB := NewPoolCommitter(api, api, api, nil, zap.NewNop(), nil)
	ctx := context.Background()
	first, _, err := allocate(nodeA, ctx, "p")
	if err != nil {
		t.Fatal(err)
	}
	if err := release(nodeA, ctx, "p", first.Addr()); err != nil {
		t.Fatal(err)
	}
	again, _, err := allocate(nodeB, ctx, "p")
	if err != nil {
		t.Fatal(err)
	}
	if again.Addr() == first.Addr() {
		t.Fatalf("node B handed out %s, freed a moment ago by node A, while the rest of the pool is free", again)
	}
}
