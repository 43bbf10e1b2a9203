package cni

import (
	"errors"
	"strings"
	"testing"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/rpc"
	"github.com/underpool/underpool/tests/e2e"
	"github.com/underpool/underpool/tests/harness"
)

// underpool-ipam inside an ordinary macvlan conflist gives the pod its address; asking
// again for the same (container, interface) returns the same address; DEL frees it.
func TestUnderpoolIPAMInPlainConflist(t *testing.T) {
	v4net, _, _ := e2e.NextSubnet()
	pool := e2e.NewPool(t, v1.IPPoolSpec{Subnet: v4net, Gateway: strings.TrimSuffix(v4net, "0/24") + "1"})
	ns := e2e.NewNamespace(t)
	conf := e2e.IPAMPluginConf(t, e2e.NewParent(t), pool.Name)
	pod := e2e.NewPodNS(t)
	rt := e2e.RuntimeFor(pod, ns, "plain", "eth0")
	res, err := e2e.Suite.CNI.Add(e2e.Ctx(t), conf, rt)
	if err != nil {
		t.Fatalf("ADD: %v", err)
	}
	v4, _ := e2e.IPsOf(t, res)
	if len(v4) != 1 {
		t.Fatalf("want one address, got %v", v4)
	}
	if ok, err := harness.HasAddr(pod.Path(), "eth0", v4[0]); err != nil || !ok {
		t.Fatalf("eth0 does not carry %s (%v)", v4[0], err)
	}
	// idempotent by (container ID, interface): the same question gets the same answer
	again, err := e2e.Suite.Ipamd.Client.Allocate(e2e.Ctx(t), &rpc.AllocateRequest{ContainerID: rt.ContainerID, IfName: "eth0",
		Pod: rpc.Pod{Namespace: ns, Name: "plain"}, IPv4Pools: []string{pool.Name}})
	if err != nil || len(again.IPs) != 1 || !strings.HasPrefix(again.IPs[0].Address, v4[0].String()+"/") {
		t.Fatalf("repeated allocate = %+v, %v; want %s", again, err, v4[0])
	}
	if p := e2e.SettledState(t, pool.Name); p.AllocatedIPCount != 1 {
		t.Fatalf("repeated allocate took another address: %+v", p)
	}
	e2e.RequireInvariants(t, e2e.AttachmentsOf(rt), pool.Name)
	if err := e2e.Suite.CNI.Check(e2e.Ctx(t), conf, rt); err != nil {
		t.Fatalf("CHECK: %v", err)
	}
	if err := e2e.Suite.CNI.Del(e2e.Ctx(t), conf, rt); err != nil {
		t.Fatalf("DEL: %v", err)
	}
	// CHECK's question after DEL is answered "not held", and allocates nothing
	_, err = e2e.Suite.Ipamd.Client.Allocate(e2e.Ctx(t), &rpc.AllocateRequest{ContainerID: rt.ContainerID, IfName: "eth0",
		Pod: rpc.Pod{Namespace: ns, Name: "plain"}, IPv4Pools: []string{pool.Name}, LookupOnly: true})
	var rerr *rpc.Error
	if !errors.As(err, &rerr) || rerr.Code != rpc.CodeNotHeld {
		t.Fatalf("lookup after DEL: want CodeNotHeld, got %v", err)
	}
	e2e.RequireNothingLeft(t, ns, pool.Name)
}
