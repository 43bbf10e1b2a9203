package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/cni/pkg/types"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/tests/harness"
)

// A host on the same L2 already holds the address ipamd hands out: ADD fails with "try
// again later" naming the address and the MAC that answered, the pool keeps the address
// in quarantine, and the runtime's retry gets the other address.
func TestNetworkIPConflictFailsAddRetryGetsAnother(t *testing.T) {
	for _, family := range []string{"IPv4", "IPv6"} {
		t.Run(family, func(t *testing.T) {
			v4net, v6net, x := nextSubnet()
			spec := v1.IPPoolSpec{Subnet: v4net, IPs: []string{fmt.Sprintf("10.250.%d.10-10.250.%d.11", x, x)}}
			taken, other, squat := fmt.Sprintf("10.250.%d.10", x), fmt.Sprintf("10.250.%d.11", x), fmt.Sprintf("10.250.%d.10/24", x)
			if family == "IPv6" {
				base := strings.TrimSuffix(v6net, "/64")
				spec = v1.IPPoolSpec{Subnet: v6net, IPs: []string{base + "10-" + base + "11"}}
				taken, other, squat = base+"10", base+"11", base+"10/64"
			}
			pool := newPool(t, spec)
			squatter := newPeer(t, nil, squat, "")
			squatterMAC := macOf(t, squatter.ns.Path(), squatter.end)
			nc := netConf{Delegate: macvlanOn(squatter.parent)}
			conf := nc.withPool(family, pool.Name).conflist(t)
			ns := newNamespace(t)
			pod := newPodNS(t)
			rt := runtimeFor(pod, ns, "conflicted", "net1")

			_, err := suite.cni.Add(ctx(t), conf, rt)
			var cniErr *types.Error
			if !asCNIError(err, &cniErr) || cniErr.Code != types.ErrTryAgainLater ||
				!strings.Contains(cniErr.Msg, taken+" is already used by "+squatterMAC) {
				t.Fatalf("ADD onto a taken address: want code 11 naming %s and %s, got %v", taken, squatterMAC, err)
			}
			if links, _ := linksIn(pod); len(links) != 1 {
				t.Fatalf("links left in the pod after the conflict: %v", links)
			}
			t.Run("quarantined in the pool", func(t *testing.T) { // ipamd's side of the contract
				q := freshPool(t, pool.Name).Status.Quarantined
				if len(q) != 1 || q[0].IP != taken || q[0].MAC != squatterMAC {
					t.Fatalf("pool quarantine = %+v, want %s by %s", q, taken, squatterMAC)
				}
			})
			res, err := suite.cni.Add(ctx(t), conf, rt)
			if err != nil {
				t.Fatalf("retry ADD: %v", err)
			}
			if got := firstIP(t, res, family == "IPv4"); got != other {
				t.Fatalf("retry got %s, want %s", got, other)
			}
			requireInvariants(t, attachmentsOf(rt), pool.Name)
			if err := suite.cni.Del(ctx(t), conf, rt); err != nil {
				t.Fatalf("DEL: %v", err)
			}
		})
	}
}

// With checks.gateway on, a pool whose gateway nobody answers for fails ADD naming the
// gateway, leaving nothing allocated; once a host answers for it, ADD succeeds.
func TestNetworkGatewayCheck(t *testing.T) {
	v4net, _, x := nextSubnet()
	gw := fmt.Sprintf("10.250.%d.1", x)
	pool := newPool(t, v1.IPPoolSpec{Subnet: v4net, Gateway: gw})
	peer := newPeer(t, nil, fmt.Sprintf("10.250.%d.200/24", x), "") // on the segment, but not the gateway
	ns := newNamespace(t)
	conf := netConf{Delegate: macvlanOn(peer.parent), IPv4Pools: []string{pool.Name},
		Extra: map[string]any{"checks": map[string]any{"gateway": true}}}.conflist(t)
	rt := runtimeFor(newPodNS(t), ns, "gwcheck", "net1")
	_, err := suite.cni.Add(ctx(t), conf, rt)
	if err == nil || !strings.Contains(err.Error(), "gateway "+gw+" does not answer on net1") {
		t.Fatalf("ADD with an absent gateway: want an error naming it, got %v", err)
	}
	requireNothingLeft(t, ns, pool.Name)
	if err := harness.AddAddr(peer.ns, peer.end, gw+"/24"); err != nil {
		t.Fatal(err)
	}
	if _, err := suite.cni.Add(ctx(t), conf, rt); err != nil {
		t.Fatalf("ADD with the gateway present: %v", err)
	}
	if err := suite.cni.Del(ctx(t), conf, rt); err != nil {
		t.Fatalf("DEL: %v", err)
	}
}

// macPrefix makes the pod's MAC follow its address, and the gratuitous ARP sent once the
// address is up teaches a neighbour that accepts them (arp_accept) the new mapping
// without it asking.
func TestNetworkMACFromIPAndGratuitousARP(t *testing.T) {
	v4net, _, x := nextSubnet()
	pool := newPool(t, v1.IPPoolSpec{Subnet: v4net, IPs: []string{fmt.Sprintf("10.250.%d.7", x)}})
	peer := newPeer(t, nil, fmt.Sprintf("10.250.%d.1/24", x), "")
	end := peer.end
	for _, key := range []string{"all", end} {
		if _, err := peer.ns.Run("sysctl", "-w", "net.ipv4.conf."+key+".arp_accept=1"); err != nil {
			t.Fatal(err)
		}
	}
	ns := newNamespace(t)
	conf := netConf{Delegate: macvlanOn(peer.parent), IPv4Pools: []string{pool.Name},
		Extra: map[string]any{"macPrefix": "0a:58"}}.conflist(t)
	pod := newPodNS(t)
	rt := runtimeFor(pod, ns, "macpod", "net1")
	if _, err := suite.cni.Add(ctx(t), conf, rt); err != nil {
		t.Fatalf("ADD: %v", err)
	}
	want := fmt.Sprintf("0a:58:0a:fa:%02x:07", x)
	if got := macOf(t, pod.Path(), "net1"); got != want {
		t.Fatalf("pod MAC = %s, want %s (prefix + address)", got, want)
	}
	// the frame crosses the veth asynchronously: wait for it, bounded
	var neigh string
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		neigh, _ = peer.ns.Run("ip", "-4", "neigh", "show", fmt.Sprintf("10.250.%d.7", x))
		if strings.Contains(neigh, want) {
			break
		}
	}
	if !strings.Contains(neigh, want) {
		t.Fatalf("the neighbour did not learn %s from the gratuitous ARP: %q", want, neigh)
	}
	if err := suite.cni.Del(ctx(t), conf, rt); err != nil {
		t.Fatalf("DEL: %v", err)
	}
}
