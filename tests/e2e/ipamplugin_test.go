package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/underpool/underpool/ipamd/api/v1"
	"github.com/underpool/underpool/ipamd/rpc"
	"github.com/underpool/underpool/tests/harness"
)

// plainMacvlanConf is a standard conflist: macvlan makes the link, underpool-ipam the addresses.
func plainMacvlanConf(t *testing.T, master, pool string) []byte {
	return mustJSON(t, map[string]any{
		"cniVersion": "1.1.0", "name": "plain-macvlan",
		"plugins": []any{map[string]any{
			"type": "macvlan", "master": master, "mode": "bridge",
			"ipam": map[string]any{"type": "underpool-ipam", "socket": suite.ipamd.Options.Socket,
				"ipv4Pools": []string{pool}, "logFile": filepath.Join(suite.dir, "ipam-plugin.log")},
		}},
	})
}

// underpool-ipam inside an ordinary macvlan conflist gives the pod its address; asking
// again for the same (container, interface) returns the same address; DEL frees it.
func TestUnderpoolIPAMInPlainConflist(t *testing.T) {
	v4net, _, _ := nextSubnet()
	pool := newPool(t, v1.IPPoolSpec{Subnet: v4net, Gateway: strings.TrimSuffix(v4net, "0/24") + "1"})
	ns := newNamespace(t)
	conf := plainMacvlanConf(t, newParent(t), pool.Name)
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
	requireEmpty(t, pool.Name, ns)
}

// ipamd restarted with live allocations keeps them and never hands them out again.
func TestIpamdRestartKeepsAllocations(t *testing.T) {
	v4net, _, _ := nextSubnet()
	pool := newPool(t, v1.IPPoolSpec{Subnet: v4net, IPs: []string{strings.TrimSuffix(v4net, "0/24") + "10-" + strings.TrimSuffix(v4net, "0/24") + "15"}})
	ns := newNamespace(t)
	alloc := func(i int) string {
		resp, err := suite.ipamd.Client.Allocate(ctx(t), &rpc.AllocateRequest{ContainerID: fmt.Sprintf("restart-%d", i), IfName: "eth0",
			Pod: rpc.Pod{Namespace: ns, Name: fmt.Sprintf("r-%d", i)}, IPv4Pools: []string{pool.Name}})
		if err != nil {
			t.Fatalf("allocate %d: %v", i, err)
		}
		return resp.IPs[0].Address
	}
	seen := map[string]bool{}
	for i := 0; i < 3; i++ {
		seen[alloc(i)] = true
	}
	if err := suite.ipamd.Restart(); err != nil {
		t.Fatalf("restart: %v", err)
	}
	for i := 3; i < 6; i++ {
		a := alloc(i)
		if seen[a] {
			t.Fatalf("after restart %s was handed out twice", a)
		}
		seen[a] = true
	}
	_, err := suite.ipamd.Client.Allocate(ctx(t), &rpc.AllocateRequest{ContainerID: "restart-6", IfName: "eth0",
		Pod: rpc.Pod{Namespace: ns, Name: "r-6"}, IPv4Pools: []string{pool.Name}})
	if err == nil || !strings.Contains(err.Error(), pool.Name+": exhausted") {
		t.Fatalf("seventh allocate from a pool of six: want exhausted, got %v", err)
	}
	for i := 0; i < 6; i++ {
		if err := suite.ipamd.Client.Release(ctx(t), &rpc.ReleaseRequest{ContainerID: fmt.Sprintf("restart-%d", i),
			Pod: rpc.Pod{Namespace: ns, Name: fmt.Sprintf("r-%d", i)}}); err != nil {
			t.Fatalf("release %d: %v", i, err)
		}
	}
	requireEmpty(t, pool.Name, ns)
}

// Bad socket requests get an error naming the field, and write nothing.
func TestBadSocketRequests(t *testing.T) {
	ns := newNamespace(t)
	cases := []struct{ body, field string }{
		{`{"ifName":"eth0","pod":{"namespace":"x","name":"y"},"ipv4Pools":["p"]}`, "containerID"},
		{`{"containerID":"c","pod":{"namespace":"x","name":"y"},"ipv4Pools":["p"]}`, "ifName"},
		{`{"containerID":"c","ifName":"eth0","ipv4Pools":["p"]}`, "K8S_POD_NAMESPACE"},
		{`{"containerID":"c","ifName":"eth0","pod":{"namespace":"` + ns + `","name":"y"},"requestedIPs":["nope"]}`, "requestedIPs"},
		{`{"containerID":"c","ifName":"eth0","bogus":1}`, `unknown field \"bogus\"`},
		{`not json`, "not a valid"},
	}
	httpc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", suite.ipamd.Options.Socket)
	}}}
	for _, c := range cases {
		resp, err := httpc.Post("http://ipamd"+rpc.PathAllocate, "application/json", bytes.NewBufferString(c.body))
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		_, _ = buf.ReadFrom(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(buf.String(), c.field) {
			t.Errorf("body %s: got %d %s, want 400 naming %s", c.body, resp.StatusCode, buf.String(), c.field)
		}
	}
	if eps := endpoints(t, ns); len(eps) != 0 {
		t.Fatalf("a rejected request wrote Endpoints: %+v", eps)
	}
}
