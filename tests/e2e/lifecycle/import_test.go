package lifecycle

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/kubectlplugin"
	"github.com/underpool/underpool/kubectlplugin/importer"
	"github.com/underpool/underpool/tests/e2e"
	"github.com/underpool/underpool/tests/harness"
)

// A migration from Spiderpool on a node whose runtime reads a conflist: the pods' sandboxes
// were made by the peer (macvlan and host-local stand in for Spiderpool's plugin, whose
// objects the test writes as Spiderpool 1.x does: no sandbox IDs). After the import and
// the switch of the node's config to underpool, ipamd serves the imported state: (a) a
// pod whose sandbox restarts keeps its address, (b) a new pod gets none a live pod holds,
// (c) a deleted pod's imported address comes back once the pod is gone, and not before:
// the DEL of its peer-era sandbox (an ID ipamd never saw) comes while the pod object still
// exists, when it cannot be told from a repeated DEL of an earlier sandbox, so it frees
// nothing; recycling frees the address on the evidence that the pod is gone.
func TestAnImportFromSpiderpoolIsServedByIpamd(t *testing.T) {
	installPeerCRDs(t)
	subnet, _, third := e2e.NextSubnet()
	master := nodeUplink // the plugins run in the node's netns, where it is
	lc := newLifecycle(t, lifecycleOptions{conflist: hostLocalConflist(t, master, subnet, third)})
	node := lc.nodes[0]
	pods := map[string]*corev1.Pod{}
	held := map[string]string{} // pod -> its address, as the peer gave it
	for _, name := range []string{"a", "b"} {
		pods[name] = e2e.NewPodOn(t, node.name, lc.ns, name, nil, nil, nil)
		held[name] = lc.sandboxAddr(node, name, "eth0")
	}
	pool := fmt.Sprintf("spider-%d", third)
	spiderpoolRecords(t, lc.ns, node.name, pool, subnet, third, pods, held)

	rep := runImport(t, importer.Spiderpool)
	wantChanges(t, rep, "create IPPool "+pool, "create Endpoint "+lc.ns+"/a", "create Endpoint "+lc.ns+"/b")
	for name := range held {
		if cid := importedContainer(t, lc.ns, name); !v1.IsUnknownSandbox(cid) {
			t.Fatalf("Endpoint %s records sandbox %q; Spiderpool 1.x records none", name, cid)
		}
	}
	waitServable(t, pool)
	node.kubelet.SetConflist(e2e.NetConf{Name: "under-import", Delegate: e2e.MacvlanOn(master), IPv4Pools: []string{pool}, OnNode: true}.Conflist(t))

	lc.requireKeptAcrossRestart(node, "a", "eth0", held["a"])
	lc.requireNewPodGetsAFreeAddress(node, "c", "eth0", nil, held)
	e2e.MustDelete(t, pods["b"], 30)
	e2e.WaitGone(t, "pod b", pods["b"])
	e2e.Eventually(t, "pod b's imported address back in pool "+pool, 30*time.Second, func() (bool, string) {
		return !e2e.PoolHolds(t, pool, held["b"]), "still held: " + held["b"]
	})
	e2e.RequireInvariants(t, lc.attachmentsOn("eth0"), pool)
	lc.deletePods()
	e2e.RequireNothingLeft(t, lc.ns, pool)
}

// A migration from whereabouts through multus: the pods were attached by the real
// whereabouts plugin from a NetworkAttachmentDefinition, which the import reads for the
// range's gateway and routes. After the NAD is switched to underpool, ipamd serves the
// imported state: (a) a pod whose sandbox restarts keeps its address, (b) a new pod gets
// none a live pod holds, with the NAD's gateway and routes. (c) Multus replays for DEL the
// delegates it cached at ADD, so a peer-era sandbox's DEL goes to whereabouts; underpool
// frees the imported address when recycling sees the pod gone.
func TestAnImportFromWhereaboutsThroughMultusIsServedByIpamd(t *testing.T) {
	installPeerCRDs(t)
	subnet, _, third := e2e.NextSubnet()
	master := nodeUplink // the plugins run in the node's netns, where it is
	lc := newLifecycle(t, lifecycleOptions{})
	node := lc.nodes[0]
	gateway := fmt.Sprintf("10.250.%d.1", third)
	e2e.NewNAD(t, lc.ns, "wb", whereaboutsConflist(t, master, subnet, gateway))
	onWB := map[string]string{"k8s.v1.cni.cncf.io/networks": "wb"}
	pods := map[string]*corev1.Pod{}
	held, sandboxes := map[string]string{}, map[string]string{}
	for _, name := range []string{"a", "b"} {
		pods[name] = e2e.NewPodOn(t, node.name, lc.ns, name, onWB, nil, nil)
		held[name] = lc.sandboxAddr(node, name, "net1")
		sb, _ := node.kubelet.Sandbox(lc.ns, name)
		sandboxes[name] = sb.ContainerID
	}

	rep := runImport(t, importer.Whereabouts)
	pool := strings.ReplaceAll(strings.ReplaceAll(subnet, "/", "-"), ":", "-")
	wantChanges(t, rep, "create IPPool "+pool, "create Endpoint "+lc.ns+"/a", "create Endpoint "+lc.ns+"/b")
	for name, cid := range sandboxes {
		if got := importedContainer(t, lc.ns, name); got != cid {
			t.Fatalf("Endpoint %s records sandbox %q, want whereabouts' %q", name, got, cid)
		}
	}
	if p := e2e.FreshPool(t, pool); p.Spec.Gateway != gateway || len(p.Spec.Routes) != 1 || p.Spec.Routes[0].Dst != "10.99.0.0/16" {
		t.Fatalf("IPPool %s spec = %+v, want the NAD's gateway %s and route 10.99.0.0/16", pool, p.Spec, gateway)
	}
	waitServable(t, pool)
	setNADConfig(t, lc.ns, "wb", e2e.NetConf{Name: "wb", Delegate: e2e.MacvlanOn(master), IPv4Pools: []string{pool}, OnNode: true}.Conflist(t))

	lc.requireKeptAcrossRestart(node, "a", "net1", held["a"])
	c := lc.requireNewPodGetsAFreeAddress(node, "c", "net1", onWB, held)
	if routes := e2e.RoutesIn(t, c, 0); !slices.Contains(routes, "10.99.0.0/16 via "+gateway+" dev net1") {
		t.Errorf("pod c's routes %q lack the NAD's 10.99.0.0/16 via %s", routes, gateway)
	}
	e2e.MustDelete(t, pods["b"], 30)
	e2e.WaitGone(t, "pod b", pods["b"])
	e2e.Eventually(t, "recycling frees pod b's imported address", time.Minute, func() (bool, string) {
		return !e2e.PoolHolds(t, pool, held["b"]), "pool " + pool + " still holds " + held["b"]
	})
	e2e.RequireInvariants(t, lc.attachmentsOn("net1"), pool)
	lc.deletePods()
	e2e.RequireNothingLeft(t, lc.ns, pool)
}

// installPeerCRDs serves Spiderpool's and whereabouts' kinds, as a cluster being migrated
// has them.
func installPeerCRDs(t *testing.T) {
	t.Helper()
	if err := harness.EnsureTools("whereabouts", "whereabouts"); err != nil { // its build keeps its CRDs
		t.Fatal(err)
	}
	crds, err := harness.ReadCRDs([]string{filepath.Join(harness.CacheDir(), "whereabouts-crds"),
		filepath.Join(harness.RepoRoot(), "tests", "testdata", "crds", "spiderpool")}, false)
	if err == nil {
		err = harness.InstallCRDs(e2e.Ctx(t), e2e.Suite.CP.Config, crds)
	}
	if err != nil {
		t.Fatalf("peer CRDs: %v", err)
	}
}

// hostLocalConflist stands for the peer's plugin on a conflist node: macvlan, addresses
// from host-local in .10-.19 of subnet.
func hostLocalConflist(t *testing.T, master, subnet string, third int32) []byte {
	return e2e.MustJSON(t, map[string]any{"cniVersion": "1.0.0", "name": "peer", "plugins": []any{map[string]any{
		"type": "macvlan", "master": master, "mode": "bridge",
		"ipam": map[string]any{"type": "host-local", "dataDir": filepath.Join(t.TempDir(), "host-local"),
			"ranges": []any{[]any{map[string]any{"subnet": subnet,
				"rangeStart": fmt.Sprintf("10.250.%d.10", third), "rangeEnd": fmt.Sprintf("10.250.%d.19", third)}}}},
	}}})
}

// whereaboutsConflist is a NAD's config as whereabouts users write it (.10-.19 of subnet,
// clear of the gateway), its flat file in a temp dir (whereabouts reads it before
// /etc/cni/net.d/whereabouts.d).
func whereaboutsConflist(t *testing.T, master, subnet, gateway string) []byte {
	dir := t.TempDir()
	common := map[string]any{"kubernetes": map[string]string{"kubeconfig": e2e.Suite.CP.KubeconfigPath},
		"log_file": filepath.Join(e2e.Suite.Dir, "whereabouts.log"), "log_level": "error"}
	flat := filepath.Join(dir, "whereabouts.conf")
	if err := writeJSON(flat, common); err != nil {
		t.Fatal(err)
	}
	start, end := strings.TrimSuffix(gateway, ".1")+".10", strings.TrimSuffix(gateway, ".1")+".19"
	ipam := map[string]any{"type": "whereabouts", "range": subnet, "range_start": start, "range_end": end, "gateway": gateway,
		"routes": []any{map[string]any{"dst": "10.99.0.0/16"}}, "configuration_path": flat}
	for k, v := range common {
		ipam[k] = v
	}
	return e2e.MustJSON(t, map[string]any{"cniVersion": "1.0.0", "name": "wb", "plugins": []any{map[string]any{
		"type": "macvlan", "master": master, "mode": "bridge", "ipam": ipam}}})
}

// spiderpoolRecords writes what Spiderpool 1.x keeps for the pods: the pool, its status
// naming each pod and UID, and each pod's SpiderEndpoint (node, UID; no sandbox ID).
func spiderpoolRecords(t *testing.T, ns, node, pool, subnet string, third int32, pods map[string]*corev1.Pod, held map[string]string) {
	t.Helper()
	allocated := map[string]map[string]string{}
	for name, addr := range held {
		ip := strings.Split(addr, "/")[0]
		allocated[ip] = map[string]string{"interface": "eth0", "pod": ns + "/" + name, "podUid": string(pods[name].UID)}
		peerObject(t, "SpiderEndpoint", ns, name, nil, map[string]any{"current": map[string]any{
			"uid": string(pods[name].UID), "node": node, "ips": []any{map[string]any{"interface": "eth0", "ipv4": addr, "ipv4Pool": pool}}}})
	}
	data, _ := json.Marshal(allocated)
	u := peerObject(t, "SpiderIPPool", "", pool, map[string]any{"subnet": subnet,
		"ips": []any{fmt.Sprintf("10.250.%d.10-10.250.%d.50", third, third)}}, nil)
	u.Object["status"] = map[string]any{"allocatedIPs": string(data), "allocatedIPCount": int64(len(allocated))}
	if err := e2e.Suite.Client.Status().Update(e2e.Ctx(t), u); err != nil {
		t.Fatalf("SpiderIPPool %s status: %v", pool, err)
	}
}

// peerObject creates a Spiderpool object (as unstructured: underpool does not depend on
// the peer's module) and deletes it after the test.
func peerObject(t *testing.T, kind, ns, name string, spec, status map[string]any) *unstructured.Unstructured {
	t.Helper()
	u := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "spiderpool.spidernet.io/v2beta1", "kind": kind}}
	u.SetNamespace(ns)
	u.SetName(name)
	if spec != nil {
		u.Object["spec"] = spec
	}
	if status != nil {
		u.Object["status"] = status
	}
	if err := e2e.Suite.Client.Create(e2e.Ctx(t), u); err != nil {
		t.Fatalf("creating %s %s: %v", kind, name, err)
	}
	t.Cleanup(func() { _ = e2e.Suite.Client.Delete(context.Background(), u) })
	return u
}

// runImport runs `kubectl underpool import` as the plugin does, on a client of its own
// scheme, and deletes the imported pools after the test.
func runImport(t *testing.T, source string) *importer.Report {
	t.Helper()
	scheme, err := kubectlplugin.Scheme()
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.New(e2e.Suite.CP.Config, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	rep, err := importer.Run(e2e.Ctx(t), c, importer.Options{Source: source})
	if err != nil {
		t.Fatalf("import %s: %v", source, err)
	}
	t.Cleanup(func() {
		for _, ch := range rep.Changes {
			if ch.Kind == "IPPool" {
				_ = e2e.Suite.Client.Delete(context.Background(), &v1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: ch.Name}})
			}
		}
	})
	return rep
}

func wantChanges(t *testing.T, rep *importer.Report, want ...string) {
	t.Helper()
	var got []string
	for _, c := range rep.Changes {
		got = append(got, c.Action+" "+c.Kind+" "+c.Name)
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("import changes %q, want %q (skipped: %+v)", got, want, rep.Skipped)
	}
}

// importedContainer is the sandbox the pod's Endpoint records.
func importedContainer(t *testing.T, ns, name string) string {
	t.Helper()
	ep := &v1.Endpoint{}
	if err := e2e.Suite.Client.Get(e2e.Ctx(t), client.ObjectKey{Namespace: ns, Name: name}, ep); err != nil || len(ep.Status.Interfaces) != 1 {
		t.Fatalf("Endpoint %s/%s: %+v, %v", ns, name, ep.Status, err)
	}
	return ep.Status.Interfaces[0].ContainerID
}

// waitServable waits for the controller's protection finalizer: ipamd hands nothing out
// of a pool without it.
func waitServable(t *testing.T, pool string) {
	t.Helper()
	e2e.WaitFor(t, "pool "+pool+" protected by the controller", func() bool {
		return slices.Contains(e2e.FreshPool(t, pool).Finalizers, v1.PoolProtection)
	})
}

// setNADConfig switches a NetworkAttachmentDefinition to another config, as an operator
// moving a network to underpool does.
func setNADConfig(t *testing.T, ns, name string, config []byte) {
	t.Helper()
	nad := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "k8s.cni.cncf.io/v1", "kind": "NetworkAttachmentDefinition"}}
	if err := e2e.Suite.Client.Get(e2e.Ctx(t), client.ObjectKey{Namespace: ns, Name: name}, nad); err != nil {
		t.Fatal(err)
	}
	nad.Object["spec"] = map[string]any{"config": string(config)}
	if err := e2e.Suite.Client.Update(e2e.Ctx(t), nad); err != nil {
		t.Fatalf("switching NAD %s: %v", name, err)
	}
}

// sandboxAddr waits for the pod's sandbox on node and returns the one global address on
// ifName in it.
func (lc *lifecycle) sandboxAddr(node *simNode, pod, ifName string) string {
	lc.t.Helper()
	var addrs []string
	lc.eventually("pod "+pod+"'s sandbox with an address on "+ifName, 2*time.Minute, func() (bool, string) {
		sb, ok := node.kubelet.Sandbox(lc.ns, pod)
		if !ok {
			return false, "no sandbox"
		}
		addrs = harness.GlobalAddrs(sb.NetNS.Path(), ifName)
		return len(addrs) == 1, fmt.Sprint(addrs)
	})
	return addrs[0]
}

// requireKeptAcrossRestart restarts the pod's sandbox (DEL of the old one, then ADD of a
// new one, under ipamd now) and requires the new one to carry the imported address, held
// by the new sandbox's record.
func (lc *lifecycle) requireKeptAcrossRestart(node *simNode, pod, ifName, addr string) {
	lc.t.Helper()
	if err := node.kubelet.RestartSandbox(lc.ns, pod, true); err != nil {
		lc.t.Fatalf("restarting %s's sandbox: %v", pod, err)
	}
	sb, _ := node.kubelet.Sandbox(lc.ns, pod)
	if got := harness.GlobalAddrs(sb.NetNS.Path(), ifName); len(got) != 1 || got[0] != addr {
		lc.t.Fatalf("after its sandbox restarted under ipamd, pod %s has %q on %s, want its imported %s", pod, got, ifName, addr)
	}
	if cid := importedContainer(lc.t, lc.ns, pod); cid != sb.ContainerID {
		lc.t.Fatalf("pod %s's Endpoint records sandbox %q, want the new %q", pod, cid, sb.ContainerID)
	}
}

// requireNewPodGetsAFreeAddress creates a pod under ipamd and requires its address to be
// none the imported pods hold; it returns the pod's network namespace.
func (lc *lifecycle) requireNewPodGetsAFreeAddress(node *simNode, pod, ifName string, annotations, held map[string]string) *harness.NetNS {
	lc.t.Helper()
	e2e.NewPodOn(lc.t, node.name, lc.ns, pod, annotations, nil, nil)
	addr := lc.sandboxAddr(node, pod, ifName)
	for holder, a := range held {
		if netip.MustParsePrefix(a).Addr() == netip.MustParsePrefix(addr).Addr() {
			lc.t.Fatalf("new pod %s got %s, which imported pod %s holds", pod, addr, holder)
		}
	}
	sb, _ := node.kubelet.Sandbox(lc.ns, pod)
	return sb.NetNS
}

// attachmentsOn are ifName of every live sandbox on the lifecycle's nodes.
func (lc *lifecycle) attachmentsOn(ifName string) []e2e.Attachment {
	out := lc.attachments()
	for i := range out {
		out[i].IfName = ifName
	}
	return out
}

// deletePods deletes the namespace's pods and waits until they are gone.
func (lc *lifecycle) deletePods() {
	lc.t.Helper()
	var list corev1.PodList
	if err := e2e.Suite.Client.List(e2e.Ctx(lc.t), &list, client.InNamespace(lc.ns)); err != nil {
		lc.t.Fatal(err)
	}
	for i := range list.Items {
		e2e.MustDelete(lc.t, &list.Items[i], 30)
	}
	for i := range list.Items {
		e2e.WaitGone(lc.t, "pod "+list.Items[i].Name, &list.Items[i])
	}
}

func writeJSON(path string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return os.WriteFile(path, data, 0o600)
}
