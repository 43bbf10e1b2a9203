package cni

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/rpc"
	"github.com/underpool/underpool/tests/e2e"
)

// ipamd restarted with live allocations keeps them and never hands them out again.
func TestIpamdRestartKeepsAllocations(t *testing.T) {
	v4net, _, _ := e2e.NextSubnet()
	pool := e2e.NewPool(t, v1.IPPoolSpec{Subnet: v4net, IPs: []string{strings.TrimSuffix(v4net, "0/24") + "10-" + strings.TrimSuffix(v4net, "0/24") + "15"}})
	ns := e2e.NewNamespace(t)
	alloc := func(i int) string {
		resp, err := e2e.Suite.Ipamd.Client.Allocate(e2e.Ctx(t), &rpc.AllocateRequest{ContainerID: fmt.Sprintf("restart-%d", i), IfName: "eth0",
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
	if err := e2e.Suite.Ipamd.Restart(); err != nil {
		t.Fatalf("restart: %v", err)
	}
	for i := 3; i < 6; i++ {
		a := alloc(i)
		if seen[a] {
			t.Fatalf("after restart %s was handed out twice", a)
		}
		seen[a] = true
	}
	e2e.RequireInvariants(t, nil, pool.Name)
	_, err := e2e.Suite.Ipamd.Client.Allocate(e2e.Ctx(t), &rpc.AllocateRequest{ContainerID: "restart-6", IfName: "eth0",
		Pod: rpc.Pod{Namespace: ns, Name: "r-6"}, IPv4Pools: []string{pool.Name}})
	if err == nil || !strings.Contains(err.Error(), pool.Name+": exhausted") {
		t.Fatalf("seventh allocate from a pool of six: want exhausted, got %v", err)
	}
	for i := 0; i < 6; i++ {
		if err := e2e.Suite.Ipamd.Client.Release(e2e.Ctx(t), &rpc.ReleaseRequest{ContainerID: fmt.Sprintf("restart-%d", i),
			Pod: rpc.Pod{Namespace: ns, Name: fmt.Sprintf("r-%d", i)}}); err != nil {
			t.Fatalf("release %d: %v", i, err)
		}
	}
	e2e.RequireNothingLeft(t, ns, pool.Name)
}

// Bad socket requests get an error naming the field, and write nothing.
func TestBadSocketRequests(t *testing.T) {
	ns := e2e.NewNamespace(t)
	cases := []struct{ body, field string }{
		{`{"ifName":"eth0","pod":{"namespace":"x","name":"y"},"ipv4Pools":["p"]}`, "containerID"},
		{`{"containerID":"c","pod":{"namespace":"x","name":"y"},"ipv4Pools":["p"]}`, "ifName"},
		{`{"containerID":"c","ifName":"eth0","ipv4Pools":["p"]}`, "K8S_POD_NAMESPACE"},
		{`{"containerID":"c","ifName":"eth0","pod":{"namespace":"` + ns + `","name":"y"},"requestedIPs":["nope"]}`, "requestedIPs"},
		{`{"containerID":"c","ifName":"eth0","bogus":1}`, `unknown field \"bogus\"`},
		{`not json`, "not a valid"},
	}
	httpc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", e2e.Suite.Ipamd.Options.Socket)
	}}}
	for _, c := range cases {
		t.Run(c.field, func(t *testing.T) {
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
		})
	}
	e2e.RequireNothingLeft(t, ns) // a rejected request writes no Endpoint
}
