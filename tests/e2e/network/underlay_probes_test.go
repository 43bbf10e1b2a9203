package network

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/cni/pkg/types"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/tests/e2e"
	"github.com/underpool/underpool/tests/harness"
)

// A host on the same L2 already holds the address ipamd hands out: ADD fails with "try
// again later" naming the address and the MAC that answered, the pool keeps the address
// in quarantine, and the runtime's retry gets the other address.
func TestNetworkIPConflictFailsAddRetryGetsAnother(t *testing.T) {
	for _, family := range []string{"IPv4", "IPv6"} {
		t.Run(family, func(t *testing.T) {
			v4net, v6net, x := e2e.NextSubnet()
			spec := v1.IPPoolSpec{Subnet: v4net, IPs: []string{fmt.Sprintf("10.250.%d.10-10.250.%d.11", x, x)}}
			taken, other, squat := fmt.Sprintf("10.250.%d.10", x), fmt.Sprintf("10.250.%d.11", x), fmt.Sprintf("10.250.%d.10/24", x)
			if family == "IPv6" {
				base := strings.TrimSuffix(v6net, "/64")
				spec = v1.IPPoolSpec{Subnet: v6net, IPs: []string{base + "10-" + base + "11"}}
				taken, other, squat = base+"10", base+"11", base+"10/64"
			}
			pool := e2e.NewPool(t, spec)
			squatter := e2e.NewPeer(t, nil, squat, "")
			squatterMAC := e2e.MACOf(t, squatter.NS.Path(), squatter.End)
			nc := e2e.NetConf{Delegate: e2e.MacvlanOn(squatter.Parent)}
			conf := nc.WithPool(family, pool.Name).Conflist(t)
			ns := e2e.NewNamespace(t)
			pod := e2e.NewPodNS(t)
			rt := e2e.RuntimeFor(pod, ns, "conflicted", "net1")

			_, err := e2e.Suite.CNI.Add(e2e.Ctx(t), conf, rt)
			var cniErr *types.Error
			if !e2e.AsCNIError(err, &cniErr) || cniErr.Code != types.ErrTryAgainLater ||
				!strings.Contains(cniErr.Msg, taken+" is already used by "+squatterMAC) {
				t.Fatalf("ADD onto a taken address: want code 11 naming %s and %s, got %v", taken, squatterMAC, err)
			}
			if links, _ := e2e.LinksIn(pod); len(links) != 1 {
				t.Fatalf("links left in the pod after the conflict: %v", links)
			}
			t.Run("quarantined in the pool", func(t *testing.T) { // ipamd's side of the contract
				q := e2e.FreshState(t, pool.Name).Quarantined
				if len(q) != 1 || q[0].IP != taken || q[0].MAC != squatterMAC {
					t.Fatalf("pool quarantine = %+v, want %s by %s", q, taken, squatterMAC)
				}
			})
			res, err := e2e.Suite.CNI.Add(e2e.Ctx(t), conf, rt)
			if err != nil {
				t.Fatalf("retry ADD: %v", err)
			}
			if got := e2e.FirstIP(t, res, family == "IPv4"); got != other {
				t.Fatalf("retry got %s, want %s", got, other)
			}
			e2e.RequireInvariants(t, e2e.AttachmentsOf(rt), pool.Name)
			if err := e2e.Suite.CNI.Del(e2e.Ctx(t), conf, rt); err != nil {
				t.Fatalf("DEL: %v", err)
			}
		})
	}
}

// With checks.gateway on, a pool whose gateway nobody answers for fails ADD naming the
// gateway, leaving nothing allocated; once a host answers for it, ADD succeeds.
func TestNetworkGatewayCheck(t *testing.T) {
	v4net, _, x := e2e.NextSubnet()
	gw := fmt.Sprintf("10.250.%d.1", x)
	pool := e2e.NewPool(t, v1.IPPoolSpec{Subnet: v4net, Gateway: gw})
	peer := e2e.NewPeer(t, nil, fmt.Sprintf("10.250.%d.200/24", x), "") // on the segment, but not the gateway
	ns := e2e.NewNamespace(t)
	conf := e2e.NetConf{Delegate: e2e.MacvlanOn(peer.Parent), IPv4Pools: []string{pool.Name},
		Extra: map[string]any{"checks": map[string]any{"gateway": true}}}.Conflist(t)
	rt := e2e.RuntimeFor(e2e.NewPodNS(t), ns, "gwcheck", "net1")
	_, err := e2e.Suite.CNI.Add(e2e.Ctx(t), conf, rt)
	if err == nil || !strings.Contains(err.Error(), "gateway "+gw+" does not answer on net1") {
		t.Fatalf("ADD with an absent gateway: want an error naming it, got %v", err)
	}
	e2e.RequireNothingLeft(t, ns, pool.Name)
	if err := harness.AddAddr(peer.NS, peer.End, gw+"/24"); err != nil {
		t.Fatal(err)
	}
	if _, err := e2e.Suite.CNI.Add(e2e.Ctx(t), conf, rt); err != nil {
		t.Fatalf("ADD with the gateway present: %v", err)
	}
	if err := e2e.Suite.CNI.Del(e2e.Ctx(t), conf, rt); err != nil {
		t.Fatalf("DEL: %v", err)
	}
}

// macPrefix makes the pod's MAC follow its address, and the gratuitous ARP sent once the
// address is up teaches a neighbour that accepts them (arp_accept) the new mapping
// without it asking.
func TestNetworkMACFromIPAndGratuitousARP(t *testing.T) {
	v4net, _, x := e2e.NextSubnet()
	pool := e2e.NewPool(t, v1.IPPoolSpec{Subnet: v4net, IPs: []string{fmt.Sprintf("10.250.%d.7", x)}})
	peer := e2e.NewPeer(t, nil, fmt.Sprintf("10.250.%d.1/24", x), "")
	end := peer.End
	for _, key := range []string{"all", end} {
		if _, err := peer.NS.Run("sysctl", "-w", "net.ipv4.conf."+key+".arp_accept=1"); err != nil {
			t.Fatal(err)
		}
	}
	ns := e2e.NewNamespace(t)
	conf := e2e.NetConf{Delegate: e2e.MacvlanOn(peer.Parent), IPv4Pools: []string{pool.Name},
		Extra: map[string]any{"macPrefix": "0a:58"}}.Conflist(t)
	pod := e2e.NewPodNS(t)
	rt := e2e.RuntimeFor(pod, ns, "macpod", "net1")
	if _, err := e2e.Suite.CNI.Add(e2e.Ctx(t), conf, rt); err != nil {
		t.Fatalf("ADD: %v", err)
	}
	want := fmt.Sprintf("0a:58:0a:fa:%02x:07", x)
	if got := e2e.MACOf(t, pod.Path(), "net1"); got != want {
		t.Fatalf("pod MAC = %s, want %s (prefix + address)", got, want)
	}
	// the frame crosses the veth asynchronously: wait for it, bounded
	var neigh string
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		neigh, _ = peer.NS.Run("ip", "-4", "neigh", "show", fmt.Sprintf("10.250.%d.7", x))
		if strings.Contains(neigh, want) {
			break
		}
	}
	if !strings.Contains(neigh, want) {
		t.Fatalf("the neighbour did not learn %s from the gratuitous ARP: %q", want, neigh)
	}
	if err := e2e.Suite.CNI.Del(e2e.Ctx(t), conf, rt); err != nil {
		t.Fatalf("DEL: %v", err)
	}
}
