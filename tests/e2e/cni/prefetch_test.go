package cni

import (
	"fmt"
	"testing"
	"time"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/tests/e2e"
	"github.com/underpool/underpool/tests/harness"
	"github.com/underpool/underpool/tests/harness/kubelet"
)

// ADDs in a row on one node, through the meta-plugin as a runtime calls it: from the third
// on, an ADD takes the address ipamd committed behind the one before (one API write on its
// path, docs/design.md "One write per ADD"). The address prefetched behind the last ADD
// is freed once no ADD came for it, and after the DELs nothing is left. --prefetch-idle is
// 2 s (the most this suite's commit window allows), not ipamd's second, so that a slow
// machine's ADDs still count as in a row; and six ADDs give the prefetch four chances.
func TestADDsInARowTakeTheAddressesPrefetchedForThem(t *testing.T) {
	const node = "prefetch-node"
	d, health := e2e.NodeWithIpamd(t, node, "--prefetch-idle=2s")
	t.Setenv(kubelet.IpamdSocketEnv, d.Options.Socket)
	v4, _, _ := e2e.NextSubnet()
	pool := e2e.NewPool(t, v1.IPPoolSpec{Subnet: v4})
	ns := e2e.NewNamespace(t)
	conf := e2e.NetConf{Delegate: e2e.MacvlanOn(e2e.NewParent(t)), IPv4Pools: []string{pool.Name}, Socket: d.Options.Socket}.Conflist(t)

	var rts []harness.Runtime
	got := map[string]string{}
	for i := range 6 {
		name := fmt.Sprintf("pf-%d", i)
		rt := e2e.RuntimeOf(e2e.NewPodOn(t, node, ns, name, nil, nil, nil), e2e.NewPodNS(t), "net1")
		res, err := e2e.Suite.CNI.Add(e2e.Ctx(t), conf, rt)
		if err != nil {
			t.Fatalf("ADD %s: %v", name, err)
		}
		addr := e2e.FirstIP(t, res, true)
		if prev, dup := got[addr]; dup {
			t.Fatalf("%s given to %s and %s", addr, prev, name)
		}
		got[addr] = name
		rts = append(rts, rt)
	}
	m := e2e.Scrape(t, health)
	m.AtLeast(t, 1, "underpool_pool_prefetched_total", "pool", pool.Name, "event", "taken")
	m.AtLeast(t, 2, "underpool_pool_prefetched_total", "pool", pool.Name, "event", "allocated")

	e2e.Eventually(t, "the address prefetched behind the last ADD to be freed", 30*time.Second, func() (bool, string) {
		v, ok := e2e.Scrape(t, health).Get("underpool_pool_prefetched_total", "pool", pool.Name, "event", "freed")
		return ok && v >= 1, fmt.Sprintf("prefetched_total{freed} = %v (%v)", v, ok)
	})
	if ok, why := e2e.PoolMatchesEndpoints(t, pool.Name); !ok {
		t.Fatalf("once the prefetch is freed, the pool must hold what the Endpoints do: %s", why)
	}
	for _, rt := range rts {
		if err := e2e.Suite.CNI.Del(e2e.Ctx(t), conf, rt); err != nil {
			t.Fatalf("DEL: %v", err)
		}
	}
	e2e.RequireNothingLeft(t, ns, pool.Name)
}
