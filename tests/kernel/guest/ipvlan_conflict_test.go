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
				if q := e2e.FreshPool(t, pool.Name).Status.Quarantined; len(q) != 1 || q[0].IP != taken {
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
