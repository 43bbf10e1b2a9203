package cni

import (
	"fmt"
	"net"
	"sync"
	"testing"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/tests/e2e"
	"github.com/underpool/underpool/tests/harness"
)

// 64 pods attach at once to one pool: 64 distinct addresses, each on its pod's link and in
// the pool's status; 64 DELs at once leave the pool and Endpoints empty.
func TestSixtyFourConcurrentAddsAndDels(t *testing.T) {
	const pods = 64
	v4net, _, _ := e2e.NextSubnet()
	pool := e2e.NewPool(t, v1.IPPoolSpec{Subnet: v4net})
	ns := e2e.NewNamespace(t)
	conf := e2e.NetConf{Delegate: e2e.MacvlanOn(e2e.NewParent(t)), IPv4Pools: []string{pool.Name}}.Conflist(t)

	rts := make([]harness.Runtime, pods)
	for i := range rts {
		rts[i] = e2e.RuntimeFor(e2e.NewPodNS(t), ns, fmt.Sprintf("burst-%02d", i), "net1")
	}
	addrs := make([]net.IP, pods)
	errs := make([]error, pods)
	var wg sync.WaitGroup
	for i := range rts {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			res, err := e2e.Suite.CNI.Add(e2e.Ctx(t), conf, rts[i])
			if errs[i] = err; err == nil {
				if v4, _ := e2e.IPsOf(t, res); len(v4) == 1 {
					addrs[i] = v4[0]
				}
			}
		}(i)
	}
	wg.Wait()
	seen := map[string]string{}
	for i, err := range errs {
		if err != nil {
			t.Fatalf("ADD %s: %v", rts[i].PodName, err)
		}
		if addrs[i] == nil {
			t.Fatalf("ADD %s returned no IPv4 address", rts[i].PodName)
		}
		if other, dup := seen[addrs[i].String()]; dup {
			t.Fatalf("%s given to both %s and %s", addrs[i], other, rts[i].PodName)
		}
		seen[addrs[i].String()] = rts[i].PodName
		if ok, err := harness.HasAddr(rts[i].NetNS, "net1", addrs[i]); err != nil || !ok {
			t.Fatalf("%s: net1 does not carry %s (%v)", rts[i].PodName, addrs[i], err)
		}
	}
	if p := e2e.SettledState(t, pool.Name); p.AllocatedIPCount != pods {
		t.Fatalf("pool status counts %d allocated, want %d (%q)", p.AllocatedIPCount, pods, p.Allocated)
	}
	if eps := e2e.Endpoints(t, ns); len(eps) != pods {
		t.Fatalf("%d Endpoints, want %d", len(eps), pods)
	}
	e2e.RequireInvariants(t, e2e.AttachmentsOf(rts...), pool.Name)

	for i := range rts {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			errs[i] = e2e.Suite.CNI.Del(e2e.Ctx(t), conf, rts[i])
		}(i)
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("DEL %s: %v", rts[i].PodName, err)
		}
	}
	e2e.RequireNothingLeft(t, ns, pool.Name)
}
