package cni

import (
	"testing"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/rpc"
	"github.com/underpool/underpool/tests/e2e"
	"github.com/underpool/underpool/tests/harness"
)

// The CNI GC verb releases this node's attachments of the network that the runtime no
// longer lists, and keeps the listed ones. The forgotten attachment is made straight
// through ipamd, as after a runtime crash, so libcni's own cache cannot DEL it for us.
func TestCNIGCReleasesWhatTheRuntimeForgot(t *testing.T) {
	v4net, _, _ := e2e.NextSubnet()
	pool := e2e.NewPool(t, v1.IPPoolSpec{Subnet: v4net})
	ns := e2e.NewNamespace(t)
	conf := e2e.NetConf{Name: "gc-net", Delegate: e2e.MacvlanOn(e2e.NewParent(t)), IPv4Pools: []string{pool.Name}}.Conflist(t)
	keep := e2e.RuntimeFor(e2e.NewPodNS(t), ns, "keep", "net1")
	if _, err := e2e.Suite.CNI.Add(e2e.Ctx(t), conf, keep); err != nil {
		t.Fatalf("ADD: %v", err)
	}
	for _, network := range []string{"gc-net", "other-net"} {
		if _, err := e2e.Suite.Ipamd.Client.Allocate(e2e.Ctx(t), &rpc.AllocateRequest{ContainerID: "ctr-forgot", IfName: "net1",
			Network: network, Pod: rpc.Pod{Namespace: ns, Name: "forgot-" + network}, IPv4Pools: []string{pool.Name}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := e2e.Suite.CNI.GC(e2e.Ctx(t), conf, []harness.Attachment{{ContainerID: keep.ContainerID, IfName: "net1"}}); err != nil {
		t.Fatalf("GC: %v", err)
	}
	names := map[string]bool{}
	for _, ep := range e2e.Endpoints(t, ns) {
		names[ep.Name] = true
	}
	// the other network's attachment is not this GC's business
	if len(names) != 2 || !names["keep"] || !names["forgot-other-net"] {
		t.Fatalf("after GC want the kept pod and the other network's attachment, got %v", names)
	}
	if p := e2e.SettledState(t, pool.Name); p.AllocatedIPCount != 2 {
		t.Fatalf("after GC the pool holds %d, want 2", p.AllocatedIPCount)
	}
	e2e.RequireInvariants(t, e2e.AttachmentsOf(keep), pool.Name)
	if err := e2e.Suite.CNI.Del(e2e.Ctx(t), conf, keep); err != nil {
		t.Fatal(err)
	}
	if err := e2e.Suite.Ipamd.Client.Release(e2e.Ctx(t), &rpc.ReleaseRequest{ContainerID: "ctr-forgot"}); err != nil {
		t.Fatal(err)
	}
	e2e.RequireNothingLeft(t, ns, pool.Name)
}
