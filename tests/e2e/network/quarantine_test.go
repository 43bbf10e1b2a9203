package network

import (
	"fmt"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/ipamd/service"
	"github.com/underpool/underpool/rpc"
	"github.com/underpool/underpool/tests/e2e"
)

// An address the plugin found in use on the wire is released into quarantine: visible on
// the pool and as an event, and the retry gets another address.
func TestConflictQuarantinesTheAddress(t *testing.T) {
	v4, _, _ := e2e.NextSubnet()
	b := strings.TrimSuffix(v4, "0/24")
	pool := e2e.NewPool(t, v1.IPPoolSpec{Subnet: v4, IPs: []string{b + "10-" + b + "11"}})
	ns := e2e.NewNamespace(t)
	req := &rpc.AllocateRequest{ContainerID: "ctr-q", IfName: "net1", Pod: rpc.Pod{Namespace: ns, Name: "q"}, IPv4Pools: []string{pool.Name}}
	first, err := e2e.Suite.Ipamd.Client.Allocate(e2e.Ctx(t), req)
	if err != nil {
		t.Fatal(err)
	}
	taken := strings.Split(first.IPs[0].Address, "/")[0]
	if err := e2e.Suite.Ipamd.Client.Release(e2e.Ctx(t), &rpc.ReleaseRequest{ContainerID: "ctr-q", Pod: req.Pod,
		Conflicts: []rpc.Conflict{{IP: taken, MAC: "02:aa:bb:cc:dd:ee"}}}); err != nil {
		t.Fatalf("release with conflict: %v", err)
	}
	st := e2e.SettledState(t, pool.Name)
	if len(st.Quarantined) != 1 || st.Quarantined[0].IP != taken || st.Quarantined[0].MAC != "02:aa:bb:cc:dd:ee" || st.AllocatedIPCount != 0 {
		t.Fatalf("pool state after the conflict = %+v", st)
	}
	req.ContainerID = "ctr-q-retry"
	retry, err := e2e.Suite.Ipamd.Client.Allocate(e2e.Ctx(t), req)
	if err != nil || strings.HasPrefix(retry.IPs[0].Address, taken+"/") {
		t.Fatalf("retry got %+v (%v); the quarantined %s must not come back", retry, err, taken)
	}
	req.ContainerID, req.Pod.Name = "ctr-q-third", "q3"
	if _, err := e2e.Suite.Ipamd.Client.Allocate(e2e.Ctx(t), req); err == nil || !strings.Contains(err.Error(), "exhausted") {
		t.Fatalf("with one address quarantined and one held the pool must be exhausted, got %v", err)
	}
	e2e.RequireInvariants(t, nil, pool.Name)
	e2e.WaitFor(t, "an IPConflict event", func() bool {
		var events corev1.EventList
		_ = e2e.Suite.Client.List(e2e.Ctx(t), &events, client.InNamespace("default"))
		for _, e := range events.Items {
			if e.Reason == "IPConflict" && e.InvolvedObject.Name == pool.Name && strings.Contains(e.Message, taken) {
				return true
			}
		}
		return false
	})
	e2e.ReleaseAll(t, ns)
}

// Issue 17, finding 8: many hosts answering, one address each, fill a pool's quarantine
// up to --quarantine-max-share (10% of 40 is 4), and no further: past it each address is
// released, so the pool keeps serving, and the pool gets QuarantineFull events.
func TestConflictsQuarantineAtMostThePoolsShare(t *testing.T) {
	v4, _, _ := e2e.NextSubnet()
	b := strings.TrimSuffix(v4, "0/24")
	pool := e2e.NewPool(t, v1.IPPoolSpec{Subnet: v4, IPs: []string{b + "10-" + b + "49"}})
	ns := e2e.NewNamespace(t)
	for i := range 10 {
		req := &rpc.AllocateRequest{ContainerID: fmt.Sprintf("ctr-cap-%d", i), IfName: "net1", Pod: rpc.Pod{Namespace: ns, Name: "cap"}, IPv4Pools: []string{pool.Name}}
		got, err := e2e.Suite.Ipamd.Client.Allocate(e2e.Ctx(t), req)
		if err != nil {
			t.Fatal(err)
		}
		ip := strings.Split(got.IPs[0].Address, "/")[0]
		if err := e2e.Suite.Ipamd.Client.Release(e2e.Ctx(t), &rpc.ReleaseRequest{ContainerID: req.ContainerID, Pod: req.Pod,
			Conflicts: []rpc.Conflict{{IP: ip, MAC: fmt.Sprintf("02:00:00:00:00:%02x", i)}}}); err != nil {
			t.Fatalf("release with conflict: %v", err)
		}
	}
	if st := e2e.SettledState(t, pool.Name); len(st.Quarantined) != 4 || st.AllocatedIPCount != 0 || st.FreeIPCount != 36 {
		t.Fatalf("after 10 conflicts of 10 hosts: %d quarantined, %d allocated, %d free; want 4, 0, 36", len(st.Quarantined), st.AllocatedIPCount, st.FreeIPCount)
	}
	e2e.RequireInvariants(t, nil, pool.Name)
	e2e.WaitFor(t, "a QuarantineFull event", func() bool {
		return len(e2e.EventsAbout(t, "IPPool", pool.Name, service.ReasonQuarantineFull)) > 0
	})
}
