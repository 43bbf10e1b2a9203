package e2e

import (
	"testing"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/rpc"
	"github.com/underpool/underpool/tests/harness"
)

// The CNI GC verb releases this node's attachments of the network that the runtime no
// longer lists, and keeps the listed ones. The forgotten attachment is made straight
// through ipamd, as after a runtime crash, so libcni's own cache cannot DEL it for us.
func TestCNIGCReleasesWhatTheRuntimeForgot(t *testing.T) {
	v4net, _, _ := nextSubnet()
	pool := newPool(t, v1.IPPoolSpec{Subnet: v4net})
	ns := newNamespace(t)
	conf := netConf{Name: "gc-net", Delegate: macvlanOn(newParent(t)), IPv4Pools: []string{pool.Name}}.conflist(t)
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
	requireInvariants(t, attachmentsOf(keep), pool.Name)
	if err := suite.cni.Del(ctx(t), conf, keep); err != nil {
		t.Fatal(err)
	}
	if err := suite.ipamd.Client.Release(ctx(t), &rpc.ReleaseRequest{ContainerID: "ctr-forgot"}); err != nil {
		t.Fatal(err)
	}
	requireNothingLeft(t, ns, pool.Name)
}
