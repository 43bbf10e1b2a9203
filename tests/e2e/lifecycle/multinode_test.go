package lifecycle

import (
	"fmt"
	"sync"
	"testing"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/rpc"
	"github.com/underpool/underpool/tests/e2e"
	"github.com/underpool/underpool/tests/harness"
)

// Two nodes' ipamds allocate from one pool at the same time: every address is given once,
// and the pool's status counts exactly what the Endpoints hold.
func TestTwoNodesShareOnePoolWithoutDuplicates(t *testing.T) {
	const perNode = 40
	v4net, _, _ := e2e.NextSubnet()
	pool := e2e.NewPool(t, v1.IPPoolSpec{Subnet: v4net})
	ns := e2e.NewNamespace(t)
	nodeB, err := harness.StartIpamd(e2e.IpamdOptions("node-b"))
	if err != nil {
		t.Fatalf("second ipamd: %v", err)
	}
	t.Cleanup(func() { _ = nodeB.Stop() })

	clients := map[string]*rpc.Client{e2e.NodeName: e2e.Suite.Ipamd.Client, "node-b": nodeB.Client}
	var mu sync.Mutex
	owner := map[string]string{}
	var wg sync.WaitGroup
	errs := make(chan error, 2*perNode)
	for node, c := range clients {
		for i := 0; i < perNode; i++ {
			wg.Add(1)
			go func(node string, c *rpc.Client, i int) {
				defer wg.Done()
				pod := fmt.Sprintf("%s-pod-%d", node, i)
				resp, err := c.Allocate(e2e.Ctx(t), &rpc.AllocateRequest{ContainerID: "ctr-" + pod, IfName: "net1",
					Pod: rpc.Pod{Namespace: ns, Name: pod}, IPv4Pools: []string{pool.Name}})
				if err != nil {
					errs <- fmt.Errorf("%s: %v", pod, err)
					return
				}
				mu.Lock()
				defer mu.Unlock()
				if prev, dup := owner[resp.IPs[0].Address]; dup {
					errs <- fmt.Errorf("%s given to %s and %s", resp.IPs[0].Address, prev, pod)
				}
				owner[resp.IPs[0].Address] = pod
			}(node, c, i)
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		return
	}
	// exactly what the Endpoints hold once each node's prefetched address, committed
	// behind its last ADD, is freed untaken (a second later)
	e2e.Eventually(t, "the pool to hold what the ADDs got", e2e.SettleBound, func() (bool, string) {
		p := e2e.FreshState(t, pool.Name)
		return p.AllocatedIPCount == 2*perNode, fmt.Sprintf("pool counts %d allocated, want %d", p.AllocatedIPCount, 2*perNode)
	})
	held := 0
	for _, ep := range e2e.Endpoints(t, ns) {
		held += len(ep.Status.Interfaces)
	}
	if held != 2*perNode {
		t.Fatalf("Endpoints hold %d attachments, want %d", held, 2*perNode)
	}
	e2e.RequireInvariants(t, nil, pool.Name)
	for node, c := range clients {
		for i := 0; i < perNode; i++ {
			pod := fmt.Sprintf("%s-pod-%d", node, i)
			if err := c.Release(e2e.Ctx(t), &rpc.ReleaseRequest{ContainerID: "ctr-" + pod, Pod: rpc.Pod{Namespace: ns, Name: pod}}); err != nil {
				t.Fatalf("release %s: %v", pod, err)
			}
		}
	}
	e2e.RequireNothingLeft(t, ns, pool.Name)
}
