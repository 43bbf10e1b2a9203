package e2e

import (
	"fmt"
	"sync"
	"testing"

	v1 "github.com/underpool/underpool/ipamd/api/v1"
	"github.com/underpool/underpool/ipamd/rpc"
	"github.com/underpool/underpool/tests/harness"
)

// Two nodes' ipamds allocate from one pool at the same time: every address is given once,
// and the pool's status counts exactly what the Endpoints hold.
func TestTwoNodesShareOnePoolWithoutDuplicates(t *testing.T) {
	const perNode = 40
	v4net, _, _ := nextSubnet()
	pool := newPool(t, v1.IPPoolSpec{Subnet: v4net})
	ns := newNamespace(t)
	nodeB, err := harness.StartIpamd(ipamdOptions("node-b"))
	if err != nil {
		t.Fatalf("second ipamd: %v", err)
	}
	t.Cleanup(func() { _ = nodeB.Stop() })

	clients := map[string]*rpc.Client{nodeName: suite.ipamd.Client, "node-b": nodeB.Client}
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
				resp, err := c.Allocate(ctx(t), &rpc.AllocateRequest{ContainerID: "ctr-" + pod, IfName: "net1",
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
	if p := freshPool(t, pool.Name); p.Status.AllocatedIPCount != 2*perNode {
		t.Fatalf("pool counts %d allocated, want %d", p.Status.AllocatedIPCount, 2*perNode)
	}
	held := 0
	for _, ep := range endpoints(t, ns) {
		held += len(ep.Status.Interfaces)
	}
	if held != 2*perNode {
		t.Fatalf("Endpoints hold %d attachments, want %d", held, 2*perNode)
	}
	for node, c := range clients {
		for i := 0; i < perNode; i++ {
			pod := fmt.Sprintf("%s-pod-%d", node, i)
			if err := c.Release(ctx(t), &rpc.ReleaseRequest{ContainerID: "ctr-" + pod, Pod: rpc.Pod{Namespace: ns, Name: pod}}); err != nil {
				t.Fatalf("release %s: %v", pod, err)
			}
		}
	}
	requireEmpty(t, pool.Name, ns)
}

// The CNI GC verb releases this node's attachments of the network that the runtime no
// longer lists, and keeps the listed ones. The forgotten attachment is made straight
// through ipamd, as after a runtime crash, so libcni's own cache cannot DEL it for us.
func TestCNIGCReleasesWhatTheRuntimeForgot(t *testing.T) {
	v4net, _, _ := nextSubnet()
	pool := newPool(t, v1.IPPoolSpec{Subnet: v4net})
	ns := newNamespace(t)
	conf := netConf{Name: "gc-net", Master: newParent(t), IPv4Pools: []string{pool.Name}}.conflist(t)
	keep := runtimeFor(newPodNS(t), ns, "keep", "net1")
	if _, err := suite.cni.Add(ctx(t), conf, keep); err != nil {
		t.Fatalf("ADD: %v", err)
	}
	for _, network := range []string{"gc-net", "other-net"} {
		if _, err := suite.ipamd.Client.Allocate(ctx(t), &rpc.AllocateRequest{ContainerID: "ctr-forgot", IfName: "net1",
			Network: network, Pod: rpc.Pod{Namespace: ns, Name: "forgot-" + network}, IPv4Pools: []string{pool.Name}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := suite.cni.GC(ctx(t), conf, []harness.Attachment{{ContainerID: keep.ContainerID, IfName: "net1"}}); err != nil {
		t.Fatalf("GC: %v", err)
	}
	names := map[string]bool{}
	for _, ep := range endpoints(t, ns) {
		names[ep.Name] = true
	}
	// the other network's attachment is not this GC's business
	if len(names) != 2 || !names["keep"] || !names["forgot-other-net"] {
		t.Fatalf("after GC want the kept pod and the other network's attachment, got %v", names)
	}
	if p := freshPool(t, pool.Name); p.Status.AllocatedIPCount != 2 {
		t.Fatalf("after GC the pool holds %d, want 2", p.Status.AllocatedIPCount)
	}
	if err := suite.cni.Del(ctx(t), conf, keep); err != nil {
		t.Fatal(err)
	}
	if err := suite.ipamd.Client.Release(ctx(t), &rpc.ReleaseRequest{ContainerID: "ctr-forgot"}); err != nil {
		t.Fatal(err)
	}
	requireEmpty(t, pool.Name, ns)
}
