package e2e

import (
	"fmt"
	"strings"
	"testing"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/tests/harness/kubelet"
)

// CHECK compares the kernel with what ADD set and names what differs: an address, a
// route, a policy rule. STATUS is not ready while ipamd does not answer or the delegate
// binary is missing.
func TestNetworkCheckNamesWhatDiffers(t *testing.T) {
	_, _, x := nextSubnet()
	at := func(host int) string { return fmt.Sprintf("10.250.%d.%d", x, host) }
	pool := newPool(t, v1.IPPoolSpec{Subnet: at(0) + "/24", Gateway: at(1),
		Routes: []v1.Route{{Dst: "10.250.201.0/24", Gw: at(2)}}})
	ns := newNamespace(t)
	conf := netConf{Delegate: macvlanOn(newParent(t)), IPv4Pools: []string{pool.Name}}.conflist(t)
	pod := newPodNS(t)
	rt := runtimeFor(pod, ns, "checked", "net1")
	res, err := suite.cni.Add(ctx(t), conf, rt)
	if err != nil {
		t.Fatalf("ADD: %v", err)
	}
	ip := firstIP(t, res, true)
	if err := suite.cni.Check(ctx(t), conf, rt); err != nil {
		t.Fatalf("CHECK right after ADD: %v", err)
	}
	breakages := []struct{ name, cmd, want string }{
		{"route removed", "ip route del 10.250.201.0/24", "missing route 10.250.201.0/24 via " + at(2)},
		{"rule removed", "ip rule del from " + ip + " lookup 101", "missing rule from " + ip + "/32 lookup 101"},
		{"address removed", "ip addr del " + ip + "/24 dev net1", ip},
	}
	requireInvariants(t, attachmentsOf(rt), pool.Name)
	for _, b := range breakages { // each on top of the ones before
		t.Run(b.name, func(t *testing.T) {
			if out, err := pod.Run("sh", "-c", b.cmd); err != nil {
				t.Fatalf("%v %s", err, out)
			}
			err := suite.cni.Check(ctx(t), conf, rt)
			if err == nil || !strings.Contains(err.Error(), b.want) {
				t.Fatalf("CHECK must name %q, got %v", b.want, err)
			}
		})
	}
	if err := suite.cni.Del(ctx(t), conf, rt); err != nil {
		t.Fatalf("DEL: %v", err)
	}
	requireNothingLeft(t, ns, pool.Name)
}

func TestNetworkStatusNotReady(t *testing.T) {
	for _, c := range []struct {
		name   string
		conf   netConf
		socket string // the node's ipamd socket (UNDERPOOL_IPAMD_SOCKET); "": the suite's
		want   string // "": ready
	}{
		{"ipamd serving and macvlan installed", netConf{Delegate: macvlanOn("eth9"), IPv4Pools: []string{"p"}}, "", ""},
		{"a missing delegate binary", netConf{Delegate: map[string]any{"type": "no-such-plugin"}, IPv4Pools: []string{"p"}}, "", "no-such-plugin"},
		{"ipamd absent", netConf{Delegate: macvlanOn("eth9"), IPv4Pools: []string{"p"}}, "/run/underpool-test/none.sock", "ipamd"},
	} {
		t.Run(c.name, func(t *testing.T) {
			cni := *suite.cni
			if c.socket != "" {
				cni.Env = []string{kubelet.IpamdSocketEnv + "=" + c.socket}
			}
			err := cni.Status(ctx(t), c.conf.conflist(t))
			switch {
			case c.want == "" && err != nil:
				t.Fatalf("STATUS: %v", err)
			case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
				t.Fatalf("STATUS: want an error naming %s, got %v", c.want, err)
			}
		})
	}
}
