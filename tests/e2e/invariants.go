package e2e

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/core/allocator"
	"github.com/underpool/underpool/tests/harness"
)

// Attachment is an interface underpool made in a pod's network namespace, and whose
// record must hold every address it carries.
type Attachment struct {
	Namespace, Pod, ContainerID string
	NetNS, IfName               string
	Where                       string // the node, for messages
}

// attachmentOf is the attachment a runtime asked for on this node.
func attachmentOf(rt harness.Runtime) Attachment {
	return Attachment{Namespace: rt.PodNamespace, Pod: rt.PodName, ContainerID: rt.ContainerID,
		NetNS: rt.NetNS, IfName: rt.IfName, Where: NodeName}
}

// AttachmentsOf is the attachments the runtimes asked for on this node.
func AttachmentsOf(rts ...harness.Runtime) []Attachment {
	var out []Attachment
	for _, rt := range rts {
		out = append(out, attachmentOf(rt))
	}
	return out
}

// RequireInvariants checks, after a test changed pods, what must hold at every moment: no
// address held by two attachments of any Endpoint in the cluster; every address on a live
// attachment held by that very attachment's record; each pool's status equal to what the
// Endpoints hold in it (waited for: a release in flight, an orphan the controller sweeps).
func RequireInvariants(t *testing.T, live []Attachment, pools ...string) {
	t.Helper()
	var all v1.EndpointList
	if err := Suite.Client.List(Ctx(t), &all); err != nil {
		t.Fatal(err)
	}
	for _, dup := range HeldTwice(all.Items) {
		t.Errorf("INVARIANT: %s", dup)
	}
	for _, a := range live {
		ep := &v1.Endpoint{}
		err := Suite.Client.Get(Ctx(t), client.ObjectKey{Namespace: a.Namespace, Name: a.Pod}, ep)
		for _, addr := range harness.GlobalAddrs(a.NetNS, a.IfName) {
			if err != nil || !Holds(ep, a.ContainerID, addr) {
				t.Errorf("INVARIANT: pod %s/%s sandbox %.12s on %s has %s on %s, which its Endpoint does not hold for it (%v)",
					a.Namespace, a.Pod, a.ContainerID, a.Where, addr, a.IfName, err)
			}
		}
	}
	for _, pool := range pools {
		Eventually(t, "pool "+pool+" state = its Endpoints, status counts = its state's", 30*time.Second, func() (bool, string) {
			if ok, why := PoolMatchesEndpoints(t, pool); !ok {
				return false, why
			}
			// the counts are the controller's copy, at most --counts-interval behind
			why := CountsMismatch(FreshPool(t, pool), FreshState(t, pool))
			return why == "", why
		})
	}
}

// poolAllocated reads a pool from the API and parses what its allocation state holds.
func poolAllocated(t *testing.T, pool string) (*allocator.PoolView, allocator.RunSet) {
	t.Helper()
	p := FreshPool(t, pool)
	view, err := allocator.NewPool(p.Name, &p.Spec)
	if err != nil {
		t.Fatalf("pool %s: %v", pool, err)
	}
	allocated, err := allocator.ParseRunSet(FreshState(t, pool).Allocated)
	if err != nil {
		t.Fatalf("pool %s state: %v", pool, err)
	}
	return view, allocated
}

// PoolMatchesEndpoints compares a pool's allocated set with the union of what every
// Endpoint holds in it.
func PoolMatchesEndpoints(t *testing.T, pool string) (bool, string) {
	t.Helper()
	p := FreshPool(t, pool)
	st := FreshState(t, pool)
	var all v1.EndpointList
	if err := Suite.Client.List(Ctx(t), &all); err != nil {
		t.Fatal(err)
	}
	mismatch, err := PoolMismatch(p, &st, all.Items)
	if err != nil {
		t.Fatal(err)
	}
	return mismatch == "", mismatch
}

// SettledState is FreshState once the pool's state holds exactly what the Endpoints hold,
// or after SettleBound: ipamd frees an address just after the DEL that unrecorded it
// answered, and a node busy with a pool keeps one address prefetched for its next ADD for a
// second. A check of what a pool holds right after ADDs or DELs reads it through here.
func SettledState(t *testing.T, pool string) v1.AllocationState {
	t.Helper()
	deadline := time.Now().Add(SettleBound)
	for {
		if ok, _ := PoolMatchesEndpoints(t, pool); ok || time.Now().After(deadline) {
			return FreshState(t, pool)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// PoolHolds reports whether the pool's allocation state (read from the API) has addr allocated.
func PoolHolds(t *testing.T, pool, addr string) bool {
	t.Helper()
	view, allocated := poolAllocated(t, pool)
	o, ok := view.Offset(MustPrefix(t, addr).Addr())
	return ok && allocated.Contains(o)
}

// Leftovers says what is left of a test: Endpoints in namespace ns, addresses in the pools,
// attachments of ns still up; "" when nothing is.
func Leftovers(t *testing.T, ns string, pools []string, live []Attachment) string {
	t.Helper()
	var left []string
	if eps := Endpoints(t, ns); len(eps) > 0 {
		left = append(left, fmt.Sprintf("namespace %s still has %d Endpoints: %+v", ns, len(eps), eps))
	}
	for _, pool := range pools {
		if st := FreshState(t, pool); st.AllocatedIPCount != 0 || st.Allocated != "" {
			left = append(left, fmt.Sprintf("pool %s still holds %d addresses (%q)", pool, st.AllocatedIPCount, st.Allocated))
		}
	}
	for _, a := range live {
		if a.Namespace == ns {
			left = append(left, fmt.Sprintf("%s keeps a sandbox of %s", a.Where, a.Pod))
		}
	}
	return strings.Join(left, "; ")
}

// SettleBound is how long a check of what is left waits for what ipamd sends after a DEL
// answered (the free, the delete of the emptied Endpoint) and for a prefetched address
// nobody took (freed a second after the last ADD). It is well below the orphan sweeper's
// quickest reclaim (its grace, 3 s, then two commit windows, 16 s), so an address a DEL
// forgot is still found, not freed by the sweeper meanwhile.
const SettleBound = 5 * time.Second

// SettledLeftovers is Leftovers once it is "", or after SettleBound.
func SettledLeftovers(t *testing.T, ns string, pools []string, live []Attachment) string {
	t.Helper()
	deadline := time.Now().Add(SettleBound)
	for {
		left := Leftovers(t, ns, pools, live)
		if left == "" || time.Now().After(deadline) {
			return left
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// RequireNothingLeft checks that the namespace has no Endpoints and the pools hold
// nothing, within SettleBound: not longer, or the controller's orphan sweeper could hide an
// address a DEL forgot.
func RequireNothingLeft(t *testing.T, ns string, pools ...string) {
	t.Helper()
	if left := SettledLeftovers(t, ns, pools, nil); left != "" {
		t.Error(left)
	}
}

// InvariantWatcher samples, until stopped, what must hold at every moment, and remembers
// every violation it saw.
type InvariantWatcher struct {
	t        *testing.T
	cancel   context.CancelFunc
	done     chan struct{}
	mu       sync.Mutex
	problems []string
	Samples  int
	stopped  bool
}

// WatchInvariants starts sampling: each sample runs every probe, which returns the
// violations it sees (none when it cannot look).
func WatchInvariants(t *testing.T, probes ...func(context.Context) []string) *InvariantWatcher {
	c, cancel := context.WithCancel(context.Background())
	w := &InvariantWatcher{t: t, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(w.done)
		for c.Err() == nil {
			var found []string
			for _, probe := range probes {
				found = append(found, probe(c)...)
			}
			w.mu.Lock()
			w.Samples++
			w.problems = append(w.problems, found...)
			w.mu.Unlock()
			select {
			case <-c.Done():
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	return w
}

// HeldTwiceInCluster is a probe: every Endpoint in the cluster, no address held twice.
func HeldTwiceInCluster(c context.Context) []string {
	c, cancel := context.WithTimeout(c, 10*time.Second)
	defer cancel()
	var all v1.EndpointList
	if err := Suite.Client.List(c, &all); err != nil {
		return nil
	}
	return HeldTwice(all.Items)
}

// Check fails the test if any sample so far saw a violation.
func (w *InvariantWatcher) Check() {
	w.t.Helper()
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.problems) > 0 {
		seen := slices.Compact(slices.Sorted(slices.Values(w.problems)))
		w.t.Fatalf("INVARIANT: %d violations in %d samples: %s", len(w.problems), w.Samples,
			strings.Join(seen[:min(len(seen), 10)], "; "))
	}
}

// Stop ends the sampling and checks what it saw; it may be called again.
func (w *InvariantWatcher) Stop() {
	w.t.Helper()
	w.mu.Lock()
	stopped := w.stopped
	w.stopped = true
	w.mu.Unlock()
	if stopped {
		return
	}
	w.cancel()
	<-w.done
	w.Check()
}
