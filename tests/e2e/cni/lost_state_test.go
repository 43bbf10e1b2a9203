package cni

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/rpc"
	"github.com/underpool/underpool/tests/e2e"
)

// A PoolAllocation deleted by hand while pods hold its addresses: ipamd does not start the
// pool again from an empty state (it would hand out what the pods hold); the pool hands
// nothing out and says how to repair it, and serves again once the state is restored.
func TestAPoolWhoseStateIsDeletedByHandHandsOutNothingUntilRestored(t *testing.T) {
	v4net, _, _ := e2e.NextSubnet()
	base := strings.TrimSuffix(v4net, "0/24")
	pool := e2e.NewPool(t, v1.IPPoolSpec{Subnet: v4net, IPs: []string{base + "10-" + base + "12"}})
	ns := e2e.NewNamespace(t)
	alloc := func(i int) (string, error) {
		resp, err := e2e.Suite.Ipamd.Client.Allocate(e2e.Ctx(t), &rpc.AllocateRequest{ContainerID: fmt.Sprintf("lost-%d", i), IfName: "eth0",
			Pod: rpc.Pod{Namespace: ns, Name: fmt.Sprintf("l-%d", i)}, IPv4Pools: []string{pool.Name}})
		if err != nil {
			return "", err
		}
		return resp.IPs[0].Address, nil
	}
	held, err := alloc(0)
	if err != nil {
		t.Fatal(err)
	}
	state := &v1.PoolAllocation{}
	if err := e2e.Suite.Client.Get(e2e.Ctx(t), client.ObjectKey{Name: pool.Name}, state); err != nil {
		t.Fatal(err)
	}
	e2e.Eventually(t, "the controller to record the pool's state", 30*time.Second, func() (bool, string) {
		uid := e2e.FreshPool(t, pool.Name).Status.AllocationUID
		return uid == state.UID, string(uid)
	})
	backup := state.DeepCopy()
	if err := e2e.Suite.Client.Delete(e2e.Ctx(t), state); err != nil {
		t.Fatal(err)
	}
	if got, err := alloc(1); err == nil || !strings.Contains(err.Error(), "restore the PoolAllocation") {
		t.Fatalf("allocation after the state was deleted: got %s, %v; want a refusal naming the repair (%s is held)", got, err, held)
	}
	// the operator restores it (kubectl apply of a backup): the pool serves again, and
	// never the held address
	backup.ResourceVersion, backup.UID = "", ""
	if err := e2e.Suite.Client.Create(e2e.Ctx(t), backup); err != nil {
		t.Fatal(err)
	}
	got, err := alloc(1)
	if err != nil || got == held {
		t.Fatalf("after the restore got %s, %v; want an address other than the held %s", got, err, held)
	}
	for i := 0; i < 2; i++ {
		if err := e2e.Suite.Ipamd.Client.Release(e2e.Ctx(t), &rpc.ReleaseRequest{ContainerID: fmt.Sprintf("lost-%d", i),
			Pod: rpc.Pod{Namespace: ns, Name: fmt.Sprintf("l-%d", i)}}); err != nil {
			t.Fatalf("release %d: %v", i, err)
		}
	}
	e2e.RequireNothingLeft(t, ns, pool.Name)
}
