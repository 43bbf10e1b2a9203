package controller_test

import (
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/util/retry"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/tests/e2e"
)

// During a rolling upgrade an ipamd of the release before PoolAllocations would keep
// allocating in status.allocated, a second state beside the PoolAllocation: two nodes
// could hand out one address. The CRD refuses that write, naming the fix, so the old
// ipamd's ADD fails (and the kubelet retries it once the node runs the new one).
func TestAnOldIpamdsWriteOfStatusAllocatedIsRefused(t *testing.T) {
	// a pool with no status written yet (the rule must hold on its first status write
	// too) and one the controller has written
	pool := e2e.NewPool(t, v1.IPPoolSpec{Subnet: "10.250.61.0/24"})
	oldWrite := func(when string) {
		t.Helper()
		// what an old ipamd's commit writes, retried past the controller's own writes
		err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
			p := e2e.FreshPool(t, pool.Name)
			p.Status.LegacyAllocated = "5"
			return e2e.Suite.Client.Status().Update(e2e.Ctx(t), p)
		})
		if err == nil || !strings.Contains(err.Error(), "status.allocated is read-only") || !strings.Contains(err.Error(), "upgrade it") {
			t.Fatalf("an old ipamd's status.allocated write %s: %v; want it refused, naming the fix", when, err)
		}
	}
	oldWrite("as the pool's first status")
	e2e.Eventually(t, "the controller to write the pool's status", 30*time.Second, func() (bool, string) {
		return e2e.FreshPool(t, pool.Name).Status.TotalIPCount == 254, ""
	})
	oldWrite("over the controller's status")
	if st := e2e.FreshState(t, pool.Name); st.Allocated != "" {
		t.Fatalf("the pool's state holds %q", st.Allocated)
	}
}
