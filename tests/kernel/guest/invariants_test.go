package guest

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/tests/harness"
	"github.com/underpool/underpool/tests/kernel/vmcheck"
)

// requireInvariants checks what must hold after ADDs, as tests/e2e does: no address held by
// two attachments; every address on a live attachment held by that attachment's record; each
// pool's status equal to what the Endpoints hold in it (waited for: a release in flight).
func requireInvariants(t *testing.T, live []harness.Runtime, pools ...string) {
	t.Helper()
	var all v1.EndpointList
	if err := suite.client.List(ctx(t), &all); err != nil {
		t.Fatal(err)
	}
	for _, dup := range vmcheck.HeldTwice(all.Items) {
		t.Errorf("INVARIANT: %s", dup)
	}
	for _, rt := range live {
		ep := &v1.Endpoint{}
		err := suite.client.Get(ctx(t), client.ObjectKey{Namespace: rt.PodNamespace, Name: rt.PodName}, ep)
		for _, addr := range harness.GlobalAddrs(rt.NetNS, rt.IfName) {
			if err != nil || !vmcheck.Holds(ep, rt.ContainerID, addr) {
				t.Errorf("INVARIANT: pod %s/%s has %s on %s, which its Endpoint does not hold for it (%v)",
					rt.PodNamespace, rt.PodName, addr, rt.IfName, err)
			}
		}
	}
	for _, pool := range pools {
		eventually(t, "pool "+pool+" status = its Endpoints", 30*time.Second, func() (bool, string) {
			var eps v1.EndpointList
			if err := suite.client.List(ctx(t), &eps); err != nil {
				return false, err.Error()
			}
			mismatch, err := vmcheck.PoolMismatch(freshPool(t, pool), eps.Items)
			if err != nil {
				t.Fatal(err)
			}
			return mismatch == "", mismatch
		})
	}
}

// requireNothingLeft checks at once, after the DELs, that the namespace has no Endpoints and
// the pools hold nothing: a DEL frees synchronously.
func requireNothingLeft(t *testing.T, ns string, pools ...string) {
	t.Helper()
	var left []string
	var eps v1.EndpointList
	if err := suite.client.List(ctx(t), &eps, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	if len(eps.Items) > 0 {
		left = append(left, fmt.Sprintf("namespace %s still has %d Endpoints", ns, len(eps.Items)))
	}
	for _, pool := range pools {
		if p := freshPool(t, pool); p.Status.AllocatedIPCount != 0 || p.Status.Allocated != "" {
			left = append(left, fmt.Sprintf("pool %s still holds %d addresses (%q)", pool, p.Status.AllocatedIPCount, p.Status.Allocated))
		}
	}
	if len(left) > 0 {
		t.Error(strings.Join(left, "; "))
	}
}

// eventually polls cond until it holds or timeout passes; the failure names what was awaited
// and the last reason cond gave.
func eventually(t *testing.T, what string, timeout time.Duration, cond func() (bool, string)) {
	t.Helper()
	var last string
	err := wait.PollUntilContextTimeout(context.Background(), 250*time.Millisecond, timeout, true, func(context.Context) (bool, error) {
		ok, why := cond()
		last = why
		return ok, nil
	})
	if err != nil {
		t.Fatalf("waiting %s for %s: %s", timeout, what, last)
	}
}
