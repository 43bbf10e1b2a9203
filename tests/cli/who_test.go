package cli

import (
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/kubectlplugin"
)

func TestWho(t *testing.T) {
	ns := namespace(t, nil, nil)
	pool(t, "pw-a", poolSpec{IPPoolSpec: v1.IPPoolSpec{Subnet: "10.253.1.0/24"}, allocated: "7-9"})
	pool(t, "pw-v6", poolSpec{IPPoolSpec: v1.IPPoolSpec{Subnet: "fd00:253::/64"}, allocated: "18"})
	web := pod(t, ns, "web-0", podOpts{node: nodeA, phase: corev1.PodRunning, owner: owner("StatefulSet", "web")})
	endpoint(t, ns, "web-0", nodeA, string(web.UID), "StatefulSet", "web", attach{containerID: "sandbox-web-0", ifName: "net1", network: "macvlan-a",
		podUID: string(web.UID), age: time.Hour, ips: []v1.EndpointIP{ip("10.253.1.7/24", "pw-a"), ip("fd00:253::12/64", "pw-v6")}})
	endpoint(t, ns, "gone", nodeA, "uid-gone", "", "", attach{containerID: "sandbox-gone", ifName: "net1", podUID: "uid-gone",
		ips: []v1.EndpointIP{ip("10.253.1.8/24", "pw-a")}})

	for _, tc := range []struct {
		name, ip, state, detail string
		holder, podState, owner string
	}{
		{name: "held by a running StatefulSet pod", ip: "10.253.1.7", state: "held", holder: ns + "/web-0", podState: "Running", owner: "StatefulSet/web"},
		{name: "IPv6, written with its prefix length", ip: "fd00:253::12/64", state: "held", holder: ns + "/web-0", podState: "Running", owner: "StatefulSet/web"},
		{name: "held for a pod that is gone", ip: "10.253.1.8", state: "held", holder: ns + "/gone", podState: "pod gone: recycling frees the address"},
		{name: "orphan: marked, unheld", ip: "10.253.1.9", state: "orphan", detail: "PoolAllocation pw-a marks it allocated but no Endpoint holds it"},
		{name: "free", ip: "10.253.1.50", state: "free"},
		{name: "no pool covers it", ip: "192.0.2.1", state: "unknown", detail: "no IPPool's subnet covers it"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var r kubectlplugin.WhoReport
			pluginJSON(t, &r, "who", tc.ip)
			if r.State != tc.state || !strings.Contains(r.Detail, tc.detail) {
				t.Errorf("state %q detail %q; want %q %q", r.State, r.Detail, tc.state, tc.detail)
			}
			if tc.holder == "" {
				if len(r.Holders) != 0 {
					t.Errorf("holders %+v; want none", r.Holders)
				}
				return
			}
			if len(r.Holders) != 1 {
				t.Fatalf("holders %+v; want one", r.Holders)
			}
			h := r.Holders[0]
			if h.Pod != tc.holder || h.PodState != tc.podState || h.Owner != tc.owner || h.Node != nodeA || h.Interface != "net1" ||
				!strings.HasPrefix(h.ContainerID, "sandbox-") || h.Since.IsZero() {
				t.Errorf("holder %+v; want pod %s (%s) owner %q on %s net1", h, tc.holder, tc.podState, tc.owner, nodeA)
			}
		})
	}
	out, err := plugin(t, "who", "10.253.1.7")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("who:\n%s", out)
	for _, want := range []string{"STATE:", "held", "POD:", ns + "/web-0 (Running)", "CONTAINER:", "sandbox-web-0", "NODE:", "SINCE:", "OWNER:", "StatefulSet/web", "from pool pw-a"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	if _, err := plugin(t, "who", "10.253.1"); err == nil || !strings.Contains(err.Error(), `"10.253.1" is not an IP address`) {
		t.Errorf("bad address: %v; want it named", err)
	}
}
