package guest

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/types"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/tests/e2e"
	"github.com/underpool/underpool/tests/harness"
)

// The IP-conflict probe on ipvlan, through the meta-plugin. An l2 pod is resolved on the
// segment by ARP as a macvlan one is (with the master's MAC), so the probe runs there: an
// address another host answers for fails ADD with code 11, naming the address, and is
// quarantined; the runtime's retry gets another address. An l3 pod's addresses are routed
// to the node and never resolved on the segment (the link is NOARP: no ARP or NDP leaves
// it), so ADD runs no probe, and no gateway check or announcement, and succeeds.
func TestIpvlanConflictProbeRunsInL2AndNotInL3(t *testing.T) {
	for _, mode := range []string{"l2", "l3"} {
		t.Run(mode, func(t *testing.T) {
			v4net, _, x := e2e.NextSubnet()
			seg := newSegment(t, x)
			taken := fmt.Sprintf("10.250.%d.2", x) // the pool's first address
			if out, err := seg.gateway.Run("ip", "addr", "add", taken+"/24", "dev", seg.far); err != nil {
				t.Fatalf("giving the far end %s: %v: %s", taken, err, out)
			}
			pool := newPool(t, v1.IPPoolSpec{Subnet: v4net, Gateway: seg.gatewayAddr})
			conf := netConf{Delegate: map[string]any{"type": "ipvlan", "master": seg.master, "mode": mode},
				IPv4Pools: []string{pool.Name}}.conflist(t)
			cni := nodeCNI(t, seg.node)
			ns := newNamespace(t)
			rt := runtimeFor(newNetNS(t, "pod"), ns, "a", "net1")

			res, err := cni.Add(ctx(t), conf, rt)
			if mode == "l2" {
				var cniErr *types.Error
				if !errors.As(err, &cniErr) || cniErr.Code != types.ErrTryAgainLater || !strings.Contains(cniErr.Msg, taken+" is already used by") {
					t.Fatalf("ADD onto an address the far end answers for: want code 11 naming %s, got %v", taken, err)
				}
				if q := e2e.FreshState(t, pool.Name).Quarantined; len(q) != 1 || q[0].IP != taken {
					t.Fatalf("pool quarantine = %+v, want %s", q, taken)
				}
				if err := cni.Del(ctx(t), conf, rt); err != nil { // as the runtime does after a failed ADD
					t.Fatalf("DEL after the failed ADD: %v", err)
				}
				res, err = cni.Add(ctx(t), conf, rt) // the runtime's retry
			}
			if err != nil {
				t.Fatalf("ADD: %v", err)
			}
			got := e2e.FirstIP(t, res, true)
			switch {
			case mode == "l2" && got == taken:
				t.Fatalf("the retry got the quarantined %s again", taken)
			case mode == "l3" && got != taken:
				t.Fatalf("ADD in l3 got %s, want the pool's first address %s: nothing on the segment resolves an l3 pod", got, taken)
			}
			requireInvariants(t, []harness.Runtime{rt}, pool.Name)
			if err := cni.Del(ctx(t), conf, rt); err != nil {
				t.Fatalf("DEL: %v", err)
			}
			e2e.RequireNothingLeft(t, ns, pool.Name)
		})
	}
}

// Dual stack through the meta-plugin on an ipvlan l2 link, with the pool's first IPv6
// address held by a host on the segment. The kernel's duplicate address detection runs on
// the pod link (a neighbour advertisement answering it is multicast, and ipvlan l2 gives
// multicast to every slave), so ADD fails with code 11 naming the address, which is
// quarantined; the retry gets another IPv6 address and the IPv4 one, and both families reach
// the gateway.
func TestIpvlanDualStackThroughTheMetaPluginFindsAnIPv6Conflict(t *testing.T) {
	v4net, v6net, x := e2e.NextSubnet()
	seg := newSegment(t, x)
	gw6 := fmt.Sprintf("fd00:250:0:%x::1", x)
	taken6 := fmt.Sprintf("fd00:250:0:%x::2", x) // the IPv6 pool's first address
	for _, a := range []string{gw6, taken6} {
		if out, err := seg.gateway.Run("ip", "-6", "addr", "add", a+"/64", "dev", seg.far, "nodad"); err != nil {
			t.Fatalf("giving the far end %s: %v: %s", a, err, out)
		}
	}
	pool4 := newPool(t, v1.IPPoolSpec{Subnet: v4net, Gateway: seg.gatewayAddr})
	pool6 := newPool(t, v1.IPPoolSpec{Subnet: v6net, Gateway: gw6})
	conf := netConf{Delegate: map[string]any{"type": "ipvlan", "master": seg.master, "mode": "l2"},
		IPv4Pools: []string{pool4.Name}, IPv6Pools: []string{pool6.Name}}.conflist(t)
	cni := nodeCNI(t, seg.node)
	ns := newNamespace(t)
	pod := newNetNS(t, "pod")
	rt := runtimeFor(pod, ns, "ds", "net1")

	_, err := cni.Add(ctx(t), conf, rt)
	var cniErr *types.Error
	if !errors.As(err, &cniErr) || cniErr.Code != types.ErrTryAgainLater || !strings.Contains(cniErr.Msg, taken6+" is already used by") {
		t.Fatalf("ADD onto an IPv6 address the far end holds: want code 11 naming %s, got %v", taken6, err)
	}
	if q := e2e.FreshState(t, pool6.Name).Quarantined; len(q) != 1 || q[0].IP != taken6 {
		t.Fatalf("IPv6 pool quarantine = %+v, want %s", q, taken6)
	}
	if err := cni.Del(ctx(t), conf, rt); err != nil {
		t.Fatalf("DEL after the failed ADD: %v", err)
	}
	res, err := cni.Add(ctx(t), conf, rt)
	if err != nil {
		t.Fatalf("the retry's ADD: %v", err)
	}
	v4, v6 := e2e.IPsOf(t, res)
	if len(v4) != 1 || len(v6) != 1 || v6[0].String() == taken6 {
		t.Fatalf("the retry got %v and %v: want one address per family, not %s", v4, v6, taken6)
	}
	for _, to := range []string{seg.gatewayAddr, gw6} {
		if err := harness.Ping(pod, to, 5); err != nil {
			t.Errorf("from the pod to %s: %v", to, err)
		}
	}
	requireInvariants(t, []harness.Runtime{rt}, pool4.Name, pool6.Name)
	if err := cni.Del(ctx(t), conf, rt); err != nil {
		t.Fatalf("DEL: %v", err)
	}
	e2e.RequireNothingLeft(t, ns, pool4.Name, pool6.Name)
}
