package cni

import (
	"encoding/json"
	"strings"
	"testing"

	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/tests/e2e"
	"github.com/underpool/underpool/tests/harness"
)

// Through the multus v4 thin plugin, as a cluster runs it: a real NetworkAttachmentDefinition
// whose plugin is underpool and a real Pod naming it. The pod's net1 gets its address from
// the pool the NAD names, and multus reports it in the network-status annotation.
func TestMultusAttachesNetFromNAD(t *testing.T) {
	v4net, _, _ := e2e.NextSubnet()
	pool := e2e.NewPool(t, v1.IPPoolSpec{Subnet: v4net})
	ns := e2e.NewNamespace(t)
	e2e.NewNAD(t, ns, "underlay", e2e.NetConf{Name: "underlay", Delegate: e2e.MacvlanOn(e2e.NewParent(t)), IPv4Pools: []string{pool.Name}}.Conflist(t))
	pod := e2e.NewPod(t, ns, "db-0", map[string]string{"k8s.v1.cni.cncf.io/networks": "underlay"}, nil, nil)
	netns := e2e.NewPodNS(t)
	rt := e2e.RuntimeOf(pod, netns, "eth0")
	conf := e2e.MultusConflist(t)
	if _, err := e2e.Suite.CNI.Add(e2e.Ctx(t), conf, rt); err != nil {
		t.Fatalf("ADD through multus: %v", err)
	}

	eps := e2e.Endpoints(t, ns)
	if len(eps) != 1 || len(eps[0].Status.Interfaces) != 1 || eps[0].Status.Interfaces[0].Interface != "net1" ||
		eps[0].Status.PodUID != string(pod.UID) || eps[0].Status.Interfaces[0].Network != "underlay" {
		t.Fatalf("Endpoint for the pod's net1 = %+v", eps)
	}
	ip := eps[0].Status.Interfaces[0].IPs[0]
	if ip.Pool != pool.Name || !strings.HasPrefix(ip.Address, strings.TrimSuffix(v4net, "0/24")) {
		t.Fatalf("net1 address %+v is not from pool %s (%s)", ip, pool.Name, v4net)
	}
	addr := strings.Split(ip.Address, "/")[0]
	if ok, err := harness.HasAddr(netns.Path(), "net1", e2e.ParseIP(t, addr)); err != nil || !ok {
		t.Fatalf("net1 in the pod does not carry %s (%v)", addr, err)
	}
	if err := e2e.Suite.Client.Get(e2e.Ctx(t), client.ObjectKeyFromObject(pod), pod); err != nil {
		t.Fatal(err)
	}
	var status []struct {
		Name      string   `json:"name"`
		Interface string   `json:"interface"`
		IPs       []string `json:"ips"`
	}
	if err := json.Unmarshal([]byte(pod.Annotations["k8s.v1.cni.cncf.io/network-status"]), &status); err != nil {
		t.Fatalf("network-status annotation: %v (%q)", err, pod.Annotations["k8s.v1.cni.cncf.io/network-status"])
	}
	found := false
	for _, s := range status {
		if s.Interface == "net1" && len(s.IPs) == 1 && s.IPs[0] == addr {
			found = true
		}
	}
	if !found {
		t.Fatalf("multus network-status does not report net1 with %s: %+v", addr, status)
	}
	net1 := rt
	net1.IfName = "net1"
	e2e.RequireInvariants(t, e2e.AttachmentsOf(net1), pool.Name)

	if err := e2e.Suite.CNI.Del(e2e.Ctx(t), conf, rt); err != nil {
		t.Fatalf("DEL through multus: %v", err)
	}
	e2e.RequireNothingLeft(t, ns, pool.Name)
}

// multus' "default-route" in the networks annotation puts the pod's default route on the
// underlay interface through the named gateway, even when the network config leaves the
// default route alone (defaultRoute: false).
func TestMultusDefaultRouteSelection(t *testing.T) {
	v4net, _, _ := e2e.NextSubnet()
	gw := strings.TrimSuffix(v4net, "0/24") + "1"
	pool := e2e.NewPool(t, v1.IPPoolSpec{Subnet: v4net, Gateway: gw})
	ns := e2e.NewNamespace(t)
	e2e.NewNAD(t, ns, "underlay-dr", e2e.NetConf{Name: "underlay-dr", Delegate: e2e.MacvlanOn(e2e.NewParent(t)), IPv4Pools: []string{pool.Name},
		// multus v4.2.2 rewrites the default route only in results it can parse: up to 1.0.0
		CNIVersion: "1.0.0", Extra: map[string]any{"defaultRoute": false}}.Conflist(t))
	pod := e2e.NewPod(t, ns, "dr-0", map[string]string{
		"k8s.v1.cni.cncf.io/networks": `[{"name":"underlay-dr","default-route":["` + gw + `"]}]`}, nil, nil)
	netns := e2e.NewPodNS(t)
	rt := e2e.RuntimeOf(pod, netns, "eth0")
	mconf := e2e.MultusConflist(t)
	if _, err := e2e.Suite.CNI.Add(e2e.Ctx(t), mconf, rt); err != nil {
		t.Fatalf("ADD through multus: %v", err)
	}
	e2e.RequireDefaultRoute(t, netns, gw)
	net1 := rt
	net1.IfName = "net1"
	e2e.RequireInvariants(t, e2e.AttachmentsOf(net1), pool.Name)
	if err := e2e.Suite.CNI.Del(e2e.Ctx(t), mconf, rt); err != nil {
		t.Fatalf("DEL through multus: %v", err)
	}
	e2e.RequireNothingLeft(t, ns, pool.Name)
}
