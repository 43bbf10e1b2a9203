package e2e

import (
	"errors"
	"strings"
	"testing"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/rpc"
	"github.com/underpool/underpool/tests/harness"
)

// underpool-ipam inside an ordinary macvlan conflist gives the pod its address; asking
// again for the same (container, interface) returns the same address; DEL frees it.
func TestUnderpoolIPAMInPlainConflist(t *testing.T) {
	v4net, _, _ := nextSubnet()
	pool := newPool(t, v1.IPPoolSpec{Subnet: v4net, Gateway: strings.TrimSuffix(v4net, "0/24") + "1"})
	ns := newNamespace(t)
	conf := ipamPluginConf(t, newParent(t), pool.Name)
	pod := newPodNS(t)
	rt := runtimeFor(pod, ns, "plain", "eth0")
	res, err := suite.cni.Add(ctx(t), conf, rt)
	if err != nil {
		t.Fatalf("ADD: %v", err)
	}
	v4, _ := ipsOf(t, res)
	if len(v4) != 1 {
		t.Fatalf("want one address, got %v", v4)
	}
	if ok, err := harness.HasAddr(pod.Path(), "eth0", v4[0]); err != nil || !ok {
		t.Fatalf("eth0 does not carry %s (%v)", v4[0], err)
	}
	// idempotent by (container ID, interface): the same question gets the same answer
	again, err := suite.ipamd.Client.Allocate(ctx(t), &rpc.AllocateRequest{ContainerID: rt.ContainerID, IfName: "eth0",
		Pod: rpc.Pod{Namespace: ns, Name: "plain"}, IPv4Pools: []string{pool.Name}})
	if err != nil || len(again.IPs) != 1 || !strings.HasPrefix(again.IPs[0].Address, v4[0].String()+"/") {
		t.Fatalf("repeated allocate = %+v, %v; want %s", again, err, v4[0])
	}
	if p := freshPool(t, pool.Name); p.Status.AllocatedIPCount != 1 {
		t.Fatalf("repeated allocate took another address: %+v", p.Status)
	}
	requireInvariants(t, attachmentsOf(rt), pool.Name)
	if err := suite.cni.Check(ctx(t), conf, rt); err != nil {
		t.Fatalf("CHECK: %v", err)
	}
	if err := suite.cni.Del(ctx(t), conf, rt); err != nil {
		t.Fatalf("DEL: %v", err)
	}
	// CHECK's question after DEL is answered "not held", and allocates nothing
	_, err = suite.ipamd.Client.Allocate(ctx(t), &rpc.AllocateRequest{ContainerID: rt.ContainerID, IfName: "eth0",
		Pod: rpc.Pod{Namespace: ns, Name: "plain"}, IPv4Pools: []string{pool.Name}, LookupOnly: true})
	var rerr *rpc.Error
	if !errors.As(err, &rerr) || rerr.Code != rpc.CodeNotHeld {
		t.Fatalf("lookup after DEL: want CodeNotHeld, got %v", err)
	}
	requireNothingLeft(t, ns, pool.Name)
}
