package controller

import (
	"context"
	"testing"
	"time"

	"go.uber.org/zap"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	v1 "github.com/underpool/underpool/api/v1"
)

// A PoolAllocation whose pool is gone (none of its name, or one of another UID) is
// deleted a window after it was first seen so, not before; one whose pool the cache does
// not hold yet but the API does (a pool created a moment ago) is kept.
func TestStatesOfGonePoolsGoAfterAWindow(t *testing.T) {
	ctx := context.Background()
	window := 40 * time.Second
	gone := v1.AllocationOf(&v1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: "gone", UID: "uid-gone"}})
	reborn := v1.AllocationOf(&v1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: "reborn", UID: "uid-earlier"}})
	rebornPool := poolOf("reborn", "10.9.1.0/24", "", "").pool
	fresh := poolOf("fresh", "10.9.2.0/24", "", "")
	live := poolOf("live", "10.9.3.0/24", "", "5")
	api := fake.NewClientBuilder().WithScheme(testScheme(t)).
		WithObjects(append(append([]client.Object{gone, reborn, &rebornPool}, fresh.objects()...), live.objects()...)...).Build()
	// the cache lags: it holds fresh's state but not the pool yet
	cache := fake.NewClientBuilder().WithScheme(testScheme(t)).
		WithObjects(append([]client.Object{gone.DeepCopy(), reborn.DeepCopy(), rebornPool.DeepCopy(), fresh.objects()[1]}, live.objects()...)...).Build()
	clock := time.Now()
	r := &goneAllocations{c: cache, api: api, window: window, clock: func() time.Time { return clock }, log: zap.NewNop()}
	// deletes go to the API in this test: the cache client stands for reads only
	r.c = readCacheWriteAPI{Client: api, cache: cache}
	names := []string{"gone", "reborn", "fresh", "live"}
	reconcileAll := func() {
		t.Helper()
		for _, n := range names {
			if _, err := r.Reconcile(ctx, reconcile.Request{NamespacedName: client.ObjectKey{Name: n}}); err != nil {
				t.Fatal(err)
			}
		}
	}
	exists := func(name string) bool {
		err := api.Get(ctx, client.ObjectKey{Name: name}, &v1.PoolAllocation{})
		if err != nil && !apierrors.IsNotFound(err) {
			t.Fatal(err)
		}
		return err == nil
	}
	reconcileAll()
	clock = clock.Add(window - time.Second)
	reconcileAll()
	for _, n := range names {
		if !exists(n) {
			t.Fatalf("PoolAllocation %s deleted within the window", n)
		}
	}
	clock = clock.Add(time.Second)
	reconcileAll()
	for n, want := range map[string]bool{"gone": false, "reborn": false, "fresh": true, "live": true} {
		if exists(n) != want {
			t.Errorf("PoolAllocation %s exists: %v, want %v", n, !want, want)
		}
	}
}

// readCacheWriteAPI reads from a lagging cache and writes to the API, as the manager's
// client does.
type readCacheWriteAPI struct {
	client.Client
	cache client.Reader
}

func (c readCacheWriteAPI) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	return c.cache.Get(ctx, key, obj, opts...)
}
