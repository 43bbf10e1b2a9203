package orphans

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"go.uber.org/zap"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/ipamd/store"
)

// The mark is what ties a free to one allocation: an orphan released by its late holder
// (dropping the mark) and handed out again before the sweeper's last phase is a new
// allocation whose Endpoint may still be on its way, and the sweeper leaves it alone.
func TestSweepNeverFreesAnAddressHandedOutAgainAfterItsMark(t *testing.T) {
	objs := poolWith("p", "uid-p", "5")
	objs[0].SetFinalizers([]string{v1.PoolProtection}) // ipamd hands out nothing of a pool without it
	api := fake.NewClientBuilder().WithScheme(scheme(t)).WithObjects(objs...).Build()
	s := &Sweeper{Cache: api, API: api, Writer: api, Log: zap.NewNop()}
	now := time.Now()
	if err := throughPhases(t, context.Background(), s, now, sweepsToFree-1); err != nil {
		t.Fatal(err)
	}
	if got := reclaiming(t, api, "p"); got != "5" {
		t.Fatalf("reclaiming = %q before the last phase, want the orphan 5 marked", got)
	}

	// its holder's release lands (within its window), and another pod is given the address
	pools := store.NewPoolCommitter(api, api, api, nil, zap.NewNop(), nil)
	addr := netip.MustParseAddr("10.250.1.5")
	if err := pools.Release(context.Background(), store.Free{Pool: "p", Addr: addr, Evidence: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if _, err := pools.AllocateExact(context.Background(), "p", addr); err != nil {
		t.Fatal(err)
	}

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
