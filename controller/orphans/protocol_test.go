package orphans

import (
	"context"
	"testing"
	"time"

	"go.uber.org/zap"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	v1 "github.com/underpool/underpool/api/v1"
)

// The mark is what ties a free to one allocation: an orphan released by its late holder
// (dropping the mark) and handed out again before the sweeper's last phase is a new
// allocation whose Endpoint may still be on its way, and the sweeper leaves it alone.
func TestSweepNeverFreesAnAddressHandedOutAgainAfterItsMark(t *testing.T) {
	api := fake.NewClientBuilder().WithScheme(scheme(t)).WithObjects(poolWith("p", "uid-p", "5")...).Build()
	s := &Sweeper{Cache: api, API: api, Writer: api, Log: zap.NewNop()}
	now := time.Now()
	if err := throughPhases(t, context.Background(), s, now, sweepsToFree-1); err != nil {
		t.Fatal(err)
	}
	if got := reclaiming(t, api, "p"); got != "5" {
		t.Fatalf("reclaiming = %q before the last phase, want the orphan 5 marked", got)
	}

	// its holder's release lands (within its window), dropping the mark in the write that
	// frees it, and another pod is given the address: two ipamd writes, each guarded
	ipamdWrite(t, api, "p", func(s *v1.AllocationState) { s.Allocated, s.Reclaiming = "", "" })
	ipamdWrite(t, api, "p", func(s *v1.AllocationState) { s.Allocated = "5" })

	if _, err := s.Sweep(context.Background(), now.Add(sweepsToFree*time.Hour), time.Minute); err != nil {
		t.Fatal(err)
	}
	if got := allocated(t, api, "p"); got != "5" {
		t.Fatalf("allocated = %q: the sweeper freed a new allocation on the strength of an old mark", got)
	}
}

// A marked address that an Endpoint holds after all (its allocation's Endpoint write came
// late but within its window) loses its mark and is never freed.
func TestSweepUnmarksWhatAnEndpointHolds(t *testing.T) {
	api := fake.NewClientBuilder().WithScheme(scheme(t)).WithObjects(poolWith("p", "uid-p", "5")...).Build()
	s := &Sweeper{Cache: api, API: api, Writer: api, Log: zap.NewNop()}
	now := time.Now()
	if err := throughPhases(t, context.Background(), s, now, 1); err != nil {
		t.Fatal(err)
	}
	if got := reclaiming(t, api, "p"); got != "5" {
		t.Fatalf("reclaiming = %q, want 5 marked", got)
	}
	ep := &v1.Endpoint{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "a"}, Status: v1.EndpointStatus{
		Interfaces: []v1.EndpointInterface{{ContainerID: "c", Interface: "net1", IPs: []v1.EndpointIP{{Address: "10.250.1.5/24", Pool: "p"}}}}}}
	if err := api.Create(context.Background(), ep); err != nil {
		t.Fatal(err)
	}
	if err := throughPhases(t, context.Background(), s, now.Add(2*time.Hour), sweepsToFree); err != nil {
		t.Fatal(err)
	}
	if got, marks := allocated(t, api, "p"), reclaiming(t, api, "p"); got != "5" || marks != "" {
		t.Fatalf("allocated %q reclaiming %q, want 5 kept and unmarked", got, marks)
	}
}

// ipamdWrite changes a pool's allocation state the way ipamd does: read, change, Update
// guarded by the resourceVersion read.
func ipamdWrite(t *testing.T, c client.Client, name string, change func(*v1.AllocationState)) {
	t.Helper()
	alloc := &v1.PoolAllocation{}
	if err := c.Get(context.Background(), client.ObjectKey{Name: name}, alloc); err != nil {
		t.Fatal(err)
	}
	change(&alloc.State)
	if err := c.Update(context.Background(), alloc); err != nil {
		t.Fatal(err)
	}
}
