package service

import (
	"context"
	"net/netip"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/core/allocator"
	"github.com/underpool/underpool/ipamd/store"
)

// What service needs of the store, and no more: store.PoolCommitter and store.Endpoints
// provide it in the daemon; tests may put fakes in their place. The store owns every read,
// retry and delete behind these methods, so the order service keeps (pool commit before
// the Endpoint claims an address, Endpoint forgets before the pool frees) is the only
// thing decided here.

// poolStore commits pool status changes, batched per pool.
type poolStore interface {
	Allocate(ctx context.Context, pool string) (store.Grant, error)
	AllocateExact(ctx context.Context, pool string, addr netip.Addr) (store.Grant, error)
	// Release frees an address under the release protocol's rules (store.Free);
	// freeing a free address, or one of a pool that is gone, succeeds.
	Release(ctx context.Context, f store.Free) error
	// ReleaseQueued is Release answered later: queued now, its outcome from wait.
	ReleaseQueued(ctx context.Context, f store.Free) (wait func() error)
	// AwaitPrefetches waits, after an allocation failed with err, until other nodes'
	// prefetched addresses are taken or freed, and says whether to try once more.
	AwaitPrefetches(ctx context.Context, err error) bool
	// Served tells the pool an ADD recorded one of its addresses (the prefetch follows
	// what a node keeps serving).
	Served(ctx context.Context, pool string)
	// Quarantine frees an address like Release and keeps it out of allocation until the
	// given time, as far as the limits allow (store/quarantine.go); the result says which
	// it did.
	Quarantine(ctx context.Context, f store.Free, mac string, until time.Time, limits store.QuarantineLimits) (store.QuarantineResult, error)
	// Remark marks addrs held and keeps them pending (the pool serving nothing) until a
	// commit succeeds; it returns the addresses the pool had lost.
	Remark(ctx context.Context, pool string, addrs []netip.Addr) ([]netip.Addr, error)
	PendingRemarks() []string
	RetryRemarks(ctx context.Context) map[string]error
	// View returns the parsed spec of a pool, for routes and gateways.
	View(ctx context.Context, name string) (*allocator.PoolView, error)
}

// endpointStore reads and writes Endpoint records.
type endpointStore interface {
	// Get may be stale: it decides what to try, never that an address is unheld.
	Get(ctx context.Context, key client.ObjectKey) (*v1.Endpoint, error)
	// Fresh reads from the API; nil when absent.
	Fresh(ctx context.Context, key client.ObjectKey) (*v1.Endpoint, error)
	// Mutate applies mutate to the newest Endpoint and writes it, retrying conflicts; on
	// success what the last call removed is proven gone and may be freed.
	Mutate(ctx context.Context, key client.ObjectKey, mutate func(*v1.Endpoint) bool) error
	DeleteEmpty(ctx context.Context, ep *v1.Endpoint) error
	List(ctx context.Context) ([]v1.Endpoint, error)
	OnNode(ctx context.Context, node string) ([]v1.Endpoint, error)
	ByContainer(ctx context.Context, containerID string) ([]v1.Endpoint, error)
	// Settle waits for the deletes of emptied Endpoints sent after their DEL answered.
	Settle()
}

var (
	_ poolStore     = (*store.PoolCommitter)(nil)
	_ endpointStore = (*store.Endpoints)(nil)
)
