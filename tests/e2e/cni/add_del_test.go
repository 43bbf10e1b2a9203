package cni

import (
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/cni/pkg/types"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/rpc"
	"github.com/underpool/underpool/tests/e2e"
	"github.com/underpool/underpool/tests/harness"
	"github.com/underpool/underpool/tests/harness/kubelet"
)

// Two pods on one macvlan (bridge mode) parent get dual-stack addresses from their pools
// and reach each other; CHECK passes; after DEL (twice) the pools and Endpoints are empty.
func TestTwoPodsOnMacvlanPingEachOther(t *testing.T) {
	v4net, v6net, _ := e2e.NextSubnet()
	gw4 := strings.TrimSuffix(v4net, "0/24") + "1"
	pool4 := e2e.NewPool(t, v1.IPPoolSpec{Subnet: v4net, Gateway: gw4})
	pool6 := e2e.NewPool(t, v1.IPPoolSpec{Subnet: v6net})
	ns := e2e.NewNamespace(t)
	conf := e2e.NetConf{Delegate: e2e.MacvlanOn(e2e.NewParent(t)), IPv4Pools: []string{pool4.Name}, IPv6Pools: []string{pool6.Name}}.Conflist(t)

	var pods []*harness.NetNS
	var rts []harness.Runtime
	var v4s, v6s []net.IP
	for _, name := range []string{"web-a", "web-b"} {
		pod := e2e.NewPodNS(t)
		rt := e2e.RuntimeFor(pod, ns, name, "net1")
		res, err := e2e.Suite.CNI.Add(e2e.Ctx(t), conf, rt)
		if err != nil {
			t.Fatalf("ADD %s: %v", name, err)
		}
		v4, v6 := e2e.IPsOf(t, res)
		if len(v4) != 1 || len(v6) != 1 {
			t.Fatalf("ADD %s: want one IPv4 and one IPv6 address, got %v %v", name, v4, v6)
		}
		_, sub4, _ := net.ParseCIDR(v4net)
		_, sub6, _ := net.ParseCIDR(v6net)
		if !sub4.Contains(v4[0]) || !sub6.Contains(v6[0]) || v4[0].String() == gw4 {
			t.Fatalf("ADD %s: addresses %v %v are not usable addresses of %s / %s", name, v4[0], v6[0], v4net, v6net)
		}
		// the kernel, not just the result, must hold the addresses
		for _, ip := range []net.IP{v4[0], v6[0]} {
			if ok, err := harness.HasAddr(pod.Path(), "net1", ip); err != nil || !ok {
				t.Fatalf("%s: net1 does not carry %s (%v)", name, ip, err)
			}
		}
		e2e.RequireDefaultRoute(t, pod, gw4)
		pods, rts = append(pods, pod), append(rts, rt)
		v4s, v6s = append(v4s, v4[0]), append(v6s, v6[0])
	}
	if v4s[0].Equal(v4s[1]) || v6s[0].Equal(v6s[1]) {
		t.Fatalf("two pods got the same address: %v %v", v4s, v6s)
	}
	if err := harness.Ping(pods[0], v4s[1].String(), 5); err != nil {
		t.Fatalf("pod a cannot reach pod b over IPv4: %v", err)
	}
	if err := harness.Ping(pods[1], v6s[0].String(), 10); err != nil {
		t.Fatalf("pod b cannot reach pod a over IPv6: %v", err)
	}
	if st := e2e.SettledState(t, pool4.Name); st.AllocatedIPCount != 2 || st.TotalIPCount != 253 {
		t.Fatalf("IPv4 pool state = %+v, want 2 of 253 allocated", st)
	}
	// what `kubectl get ippools` shows: the controller's copy of the state's counts
	e2e.Eventually(t, "the IPv4 pool's status to show 2 of 253 allocated", 30*time.Second, func() (bool, string) {
		st := e2e.FreshPool(t, pool4.Name).Status
		return st.AllocatedIPCount == 2 && st.TotalIPCount == 253 && st.FreeIPCount == 251 && st.Usage == "0%", fmt.Sprintf("%+v", st)
	})
	if eps := e2e.Endpoints(t, ns); len(eps) != 2 || eps[0].Status.Node != e2e.NodeName || len(eps[0].Status.Interfaces) != 1 {
		t.Fatalf("Endpoints = %+v", eps)
	}
	e2e.RequireInvariants(t, e2e.AttachmentsOf(rts...), pool4.Name, pool6.Name)
	for _, rt := range rts {
		if err := e2e.Suite.CNI.Check(e2e.Ctx(t), conf, rt); err != nil {
			t.Fatalf("CHECK %s: %v", rt.PodName, err)
		}
	}
	for _, rt := range rts {
		for i := 0; i < 2; i++ { // DEL is idempotent
			if err := e2e.Suite.CNI.Del(e2e.Ctx(t), conf, rt); err != nil {
				t.Fatalf("DEL %s (#%d): %v", rt.PodName, i+1, err)
			}
		}
	}
	e2e.RequireNothingLeft(t, ns, pool4.Name, pool6.Name)
}

// A failed ADD (the delegate cannot make its link) leaves no allocation and no Endpoint.
func TestFailedAddLeavesNothingBehind(t *testing.T) {
	v4net, _, _ := e2e.NextSubnet()
	pool := e2e.NewPool(t, v1.IPPoolSpec{Subnet: v4net})
	ns := e2e.NewNamespace(t)
	conf := e2e.NetConf{Delegate: e2e.MacvlanOn("nosuchparent0"), IPv4Pools: []string{pool.Name}}.Conflist(t)
	pod := e2e.NewPodNS(t)
	_, err := e2e.Suite.CNI.Add(e2e.Ctx(t), conf, e2e.RuntimeFor(pod, ns, "broken", "net1"))
	if err == nil || !strings.Contains(err.Error(), "macvlan") {
		t.Fatalf("ADD over a missing parent: want an error naming the delegate, got %v", err)
	}
	e2e.RequireNothingLeft(t, ns, pool.Name)
	links, _ := e2e.LinksIn(pod)
	if len(links) != 1 { // only lo
		t.Fatalf("links left in the pod netns: %v", links)
	}
}

// ipamd unreachable: ADD fails at once with "try again later" naming the socket; DEL succeeds.
func TestIpamdUnreachable(t *testing.T) {
	ns := e2e.NewNamespace(t)
	conf := e2e.NetConf{Delegate: e2e.MacvlanOn(e2e.NewParent(t)), IPv4Pools: []string{"any"}, Socket: "/run/underpool-test/absent.sock"}.Conflist(t)
	pod := e2e.NewPodNS(t)
	rt := e2e.RuntimeFor(pod, ns, "lonely", "net1")
	cni := *e2e.Suite.CNI
	cni.Env = []string{kubelet.IpamdSocketEnv + "=/run/underpool-test/absent.sock"} // this node's ipamd is gone
	_, err := cni.Add(e2e.Ctx(t), conf, rt)
	var cniErr *types.Error
	if err == nil || !e2e.AsCNIError(err, &cniErr) || cniErr.Code != types.ErrTryAgainLater ||
		!strings.Contains(cniErr.Msg, "ipamd unreachable at /run/underpool-test/absent.sock") {
		t.Fatalf("ADD with ipamd unreachable: want code 11 naming the socket, got %#v", err)
	}
	if links, _ := e2e.LinksIn(pod); len(links) != 1 {
		t.Fatalf("links left in the pod netns: %v", links)
	}
	if err := cni.Del(e2e.Ctx(t), conf, rt); err != nil {
		t.Fatalf("DEL with ipamd unreachable must succeed: %v", err)
	}
}

// A pool name that does not exist is named in the error.
func TestUnknownPoolIsNamed(t *testing.T) {
	ns := e2e.NewNamespace(t)
	conf := e2e.NetConf{Delegate: e2e.MacvlanOn(e2e.NewParent(t)), IPv4Pools: []string{"no-such-pool", "nor-this"}}.Conflist(t)
	_, err := e2e.Suite.CNI.Add(e2e.Ctx(t), conf, e2e.RuntimeFor(e2e.NewPodNS(t), ns, "p", "net1"))
	if err == nil || !strings.Contains(err.Error(), "no-such-pool: no such IPPool") || !strings.Contains(err.Error(), "nor-this: no such IPPool") {
		t.Fatalf("want both pools named, got %v", err)
	}
	e2e.RequireNothingLeft(t, ns)
}

// ADD after a crashed ADD converges: the plugin died after ipamd allocated (no link yet);
// the runtime's retry with the same container gets the same address and a working link,
// and the pool holds that one address only.
func TestAddAfterCrashedAddConverges(t *testing.T) {
	v4net, _, _ := e2e.NextSubnet()
	pool := e2e.NewPool(t, v1.IPPoolSpec{Subnet: v4net})
	ns := e2e.NewNamespace(t)
	conf := e2e.NetConf{Name: "crash", Delegate: e2e.MacvlanOn(e2e.NewParent(t)), IPv4Pools: []string{pool.Name}}.Conflist(t)
	pod := e2e.NewPodNS(t)
	rt := e2e.RuntimeFor(pod, ns, "crashed", "net1")
	first, err := e2e.Suite.Ipamd.Client.Allocate(e2e.Ctx(t), &rpc.AllocateRequest{ContainerID: rt.ContainerID, IfName: "net1", Network: "crash",
		Pod: rpc.Pod{Namespace: ns, Name: "crashed", UID: rt.PodUID}, IPv4Pools: []string{pool.Name}})
	if err != nil {
		t.Fatal(err)
	}
	res, err := e2e.Suite.CNI.Add(e2e.Ctx(t), conf, rt)
	if err != nil {
		t.Fatalf("ADD after the crash: %v", err)
	}
	v4, _ := e2e.IPsOf(t, res)
	if len(v4) != 1 || !strings.HasPrefix(first.IPs[0].Address, v4[0].String()+"/") {
		t.Fatalf("retry got %v, the crashed ADD had %s", v4, first.IPs[0].Address)
	}
	if ok, err := harness.HasAddr(pod.Path(), "net1", v4[0]); err != nil || !ok {
		t.Fatalf("net1 lacks %s (%v)", v4[0], err)
	}
	if p := e2e.SettledState(t, pool.Name); p.AllocatedIPCount != 1 {
		t.Fatalf("pool holds %d, want 1", p.AllocatedIPCount)
	}
	e2e.RequireInvariants(t, e2e.AttachmentsOf(rt), pool.Name)
	if err := e2e.Suite.CNI.Del(e2e.Ctx(t), conf, rt); err != nil {
		t.Fatal(err)
	}
	e2e.RequireNothingLeft(t, ns, pool.Name)
}
