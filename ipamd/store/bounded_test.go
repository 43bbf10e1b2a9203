package store

import (
	"context"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"go.uber.org/zap"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	v1 "github.com/underpool/underpool/api/v1"
)

// Records of our own writes for pods nobody asks about again (they went away) must not
// stay for the daemon's life: the map is pruned as writes go on.
func TestOwnWritesArePruned(t *testing.T) {
	e := NewEndpoints(nil, nil, nil)
	start := time.Now()
	for i := range 100 {
		key := client.ObjectKey{Namespace: "ns", Name: fmt.Sprintf("pod-%d", i)}
		e.remember(key, &v1.Endpoint{ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name}})
	}
	if n := e.OwnWrites(); n != 100 {
		t.Fatalf("%d own writes, want 100", n)
	}
	e.mu.Lock()
	e.pruneLocked(start.Add(2 * ownWriteTTL))
	e.mu.Unlock()
	if n := e.OwnWrites(); n != 0 {
		t.Fatalf("%d own writes left after their TTL, want 0", n)
	}
}

// A deleted pool's commit queue goes once it is idle: the map of queues stays bounded by
// the pools that exist.
func TestQueuesOfGonePoolsAreDropped(t *testing.T) {
	scheme := runtime.NewScheme()
	if err := v1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	api := fake.NewClientBuilder().WithScheme(scheme).WithStatusSubresource(&v1.IPPool{}).Build()
	p := NewPoolCommitter(api, api, api, nil, zap.NewNop(), nil)
	for i := range 50 {
		_ = release(p, context.Background(), fmt.Sprintf("gone-%d", i), netip.MustParseAddr("10.250.1.1"))
	}
	// a queue is dropped by its worker after the worker answered the last op: wait for
	// every worker to go idle, or the last pool's queue is counted by luck
	if n := queuesOnceIdle(t, p); n != 0 {
		t.Fatalf("%d commit queues kept for pools that do not exist", n)
	}
}

// queuesOnceIdle waits until no pool's worker runs and returns how many queues are kept.
func queuesOnceIdle(t *testing.T, p *PoolCommitter) int {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		p.mu.Lock()
		running := 0
		for _, q := range p.queues {
			if q.running {
				running++
			}
		}
		n := len(p.queues)
		p.mu.Unlock()
		if running == 0 {
			return n
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d commit queue workers still running after 10s", running)
		}
	}
}
