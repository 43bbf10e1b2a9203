package lifecycle

import (
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/tests/e2e"
)

// A StatefulSet on two nodes, run by the real StatefulSet controller and scheduler, its
// pods' sandboxes made by the kubelet stand-ins through multus. A rolling restart (each
// pod: graceful stop, CNI DEL, the object goes, the controller recreates it, ADD) keeps
// every pod's address; spec.ordinals.start is honoured; scaling down releases the
// ordinals the set no longer wants and scaling up gives them fresh addresses; deleting
// the set frees everything.
func TestStatefulSetRollingRestartKeepsAddresses(t *testing.T) {
	v4, _, _ := e2e.NextSubnet()
	pool := e2e.NewPool(t, v1.IPPoolSpec{Subnet: v4})
	lc := newLifecycle(t, lifecycleOptions{nodes: 2, ipv4Pools: []string{pool.Name}})
	sts := lc.statefulSet("web", 3)
	sts.Spec.Ordinals = &appsv1.StatefulSetOrdinals{Start: 5}
	lc.create(sts)

	pods := lc.waitReady("web", 3)
	for _, name := range []string{"web-5", "web-6", "web-7"} {
		if _, ok := pods[name]; !ok {
			t.Fatalf("pods %v, want web-5..web-7 (ordinals.start 5)", keys(pods))
		}
	}
	before := lc.addresses()
	if len(before) != 3 {
		t.Fatalf("addresses before the restart: %v", before)
	}
	for name, pod := range pods {
		if got := lc.sandboxAddresses(lc.node(pod), name); len(got) != 1 || got[0] != before[name] {
			t.Fatalf("%s's sandbox has %v on net1, its Endpoint %s", name, got, before[name])
		}
	}
	lc.requireInvariants(pool.Name)

	lc.rollingRestart(sts)
	lc.eventually("every pod replaced by the rolling restart", 3*time.Minute, func() (bool, string) {
		now := lc.waitReady("web", 3)
		for name, p := range now {
			if p.UID == pods[name].UID {
				return false, name + " not replaced yet"
			}
		}
		return true, ""
	})
	after := lc.addresses()
	for name, addr := range before {
		if after[name] != addr {
			t.Errorf("%s had %s before the rolling restart, %s after", name, addr, after[name])
		}
	}
	for name, pod := range lc.waitReady("web", 3) {
		if got := lc.sandboxAddresses(lc.node(pod), name); len(got) != 1 || got[0] != before[name] {
			t.Errorf("%s's new sandbox has %v on net1, want %s", name, got, before[name])
		}
	}
	lc.requireInvariants(pool.Name)

	lc.scale(sts, 1)
	lc.waitReady("web", 1)
	lc.eventually("web-6 and web-7 released", time.Minute, func() (bool, string) {
		a := lc.addresses()
		return len(a) == 1 && a["web-5"] == before["web-5"], "Endpoints: " + mapString(a)
	})
	if got := e2e.FreshState(t, pool.Name).AllocatedIPCount; got != 1 {
		t.Fatalf("pool holds %d after scaling to 1, want 1", got)
	}
	lc.scale(sts, 3)
	lc.waitReady("web", 3)
	lc.requireInvariants(pool.Name)

	lc.deleteAll(sts)
	lc.requireNothingLeft(pool.Name)
}
