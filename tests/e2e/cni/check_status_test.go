package cni

import (
	"fmt"
	"strings"
	"testing"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/tests/e2e"
	"github.com/underpool/underpool/tests/harness/kubelet"
)

// CHECK compares the kernel with what ADD set and names what differs: an address, a
// route, a policy rule. STATUS is not ready while ipamd does not answer or the delegate
// binary is missing.
func TestNetworkCheckNamesWhatDiffers(t *testing.T) {
	_, _, x := e2e.NextSubnet()
	at := func(host int) string { return fmt.Sprintf("10.250.%d.%d", x, host) }
	pool := e2e.NewPool(t, v1.IPPoolSpec{Subnet: at(0) + "/24", Gateway: at(1),
		Routes: []v1.Route{{Dst: "10.250.201.0/24", Gw: at(2)}}})
	ns := e2e.NewNamespace(t)
	conf := e2e.NetConf{Delegate: e2e.MacvlanOn(e2e.NewParent(t)), IPv4Pools: []string{pool.Name}}.Conflist(t)
	pod := e2e.NewPodNS(t)
	rt := e2e.RuntimeFor(pod, ns, "checked", "net1")
	res, err := e2e.Suite.CNI.Add(e2e.Ctx(t), conf, rt)
	if err != nil {
		t.Fatalf("ADD: %v", err)
	}
	ip := e2e.FirstIP(t, res, true)
	if err := e2e.Suite.CNI.Check(e2e.Ctx(t), conf, rt); err != nil {
		t.Fatalf("CHECK right after ADD: %v", err)
	}
	breakages := []struct{ name, cmd, want string }{
		{"route removed", "ip route del 10.250.201.0/24", "missing route 10.250.201.0/24 via " + at(2)},
		{"rule removed", "ip rule del from " + ip + " lookup 101", "missing rule from " + ip + "/32 lookup 101"},
		{"address removed", "ip addr del " + ip + "/24 dev net1", ip},
	}
	e2e.RequireInvariants(t, e2e.AttachmentsOf(rt), pool.Name)
	for _, b := range breakages { // each on top of the ones before
		t.Run(b.name, func(t *testing.T) {
			if out, err := pod.Run("sh", "-c", b.cmd); err != nil {
				t.Fatalf("%v %s", err, out)
			}
			err := e2e.Suite.CNI.Check(e2e.Ctx(t), conf, rt)
			if err == nil || !strings.Contains(err.Error(), b.want) {
				t.Fatalf("CHECK must name %q, got %v", b.want, err)
			}
		})
	}
	if err := e2e.Suite.CNI.Del(e2e.Ctx(t), conf, rt); err != nil {
		t.Fatalf("DEL: %v", err)
	}
	e2e.RequireNothingLeft(t, ns, pool.Name)
}

func TestNetworkStatusNotReady(t *testing.T) {
	for _, c := range []struct {
		name   string
		conf   e2e.NetConf
		socket string // the node's ipamd socket (UNDERPOOL_IPAMD_SOCKET); "": the suite's
		want   string // "": ready
	}{
		{"ipamd serving and macvlan installed", e2e.NetConf{Delegate: e2e.MacvlanOn("eth9"), IPv4Pools: []string{"p"}}, "", ""},
		{"a missing delegate binary", e2e.NetConf{Delegate: map[string]any{"type": "no-such-plugin"}, IPv4Pools: []string{"p"}}, "", "no-such-plugin"},
		{"ipamd absent", e2e.NetConf{Delegate: e2e.MacvlanOn("eth9"), IPv4Pools: []string{"p"}}, "/run/underpool-test/none.sock", "ipamd"},
	} {
		t.Run(c.name, func(t *testing.T) {
			cni := *e2e.Suite.CNI
			if c.socket != "" {
				cni.Env = []string{kubelet.IpamdSocketEnv + "=" + c.socket}
			}
			err := cni.Status(e2e.Ctx(t), c.conf.Conflist(t))
			switch {
			case c.want == "" && err != nil:
				t.Fatalf("STATUS: %v", err)
			case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
				t.Fatalf("STATUS: want an error naming %s, got %v", c.want, err)
			}
		})
	}
}
