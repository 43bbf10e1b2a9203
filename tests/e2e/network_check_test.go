package e2e

import (
	"fmt"
	"strings"
	"testing"

	v1 "github.com/underpool/underpool/ipamd/api/v1"
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
	conf := nwConf{Delegate: macvlanOn(newParent(t)), IPv4Pools: []string{pool.Name}}.conflist(t)
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
	for _, b := range breakages {
		if out, err := pod.Run("sh", "-c", b.cmd); err != nil {
			t.Fatalf("%s: %v %s", b.name, err, out)
		}
		err := suite.cni.Check(ctx(t), conf, rt)
		if err == nil || !strings.Contains(err.Error(), b.want) {
			t.Fatalf("%s: CHECK must name %q, got %v", b.name, b.want, err)
		}
	}
	if err := suite.cni.Del(ctx(t), conf, rt); err != nil {
		t.Fatalf("DEL: %v", err)
	}
	requireEmpty(t, pool.Name, ns)
}

func TestNetworkStatusNotReady(t *testing.T) {
	ok := nwConf{Delegate: macvlanOn("eth9"), IPv4Pools: []string{"p"}}.conflist(t)
	if err := suite.cni.Status(ctx(t), ok); err != nil {
		t.Fatalf("STATUS with ipamd serving and macvlan installed: %v", err)
	}
	noDelegate := nwConf{Delegate: map[string]any{"type": "no-such-plugin"}, IPv4Pools: []string{"p"}}.conflist(t)
	if err := suite.cni.Status(ctx(t), noDelegate); err == nil || !strings.Contains(err.Error(), "no-such-plugin") {
		t.Fatalf("STATUS with a missing delegate binary: want an error naming it, got %v", err)
	}
	noIpamd := nwConf{Delegate: macvlanOn("eth9"), IPv4Pools: []string{"p"},
		Extra: map[string]any{"ipam": map[string]any{"socket": "/run/underpool-test/none.sock", "ipv4Pools": []string{"p"}}}}.conflist(t)
	absent := *suite.cni
	absent.Env = []string{kubelet.IpamdSocketEnv + "=/run/underpool-test/none.sock"}
	if err := absent.Status(ctx(t), noIpamd); err == nil || !strings.Contains(err.Error(), "ipamd") {
		t.Fatalf("STATUS with ipamd absent: want an error naming ipamd, got %v", err)
	}
}
