package kubectlplugin

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/core/nadgen"
)

// render prints, for a network in the cluster, one NAD per namespace exactly as the
// controller writes it (core/nadgen), the network as controller.
func TestRenderPrintsTheNADsOfANetworkInTheCluster(t *testing.T) {
	net := &v1.UnderlayNetwork{ObjectMeta: metav1.ObjectMeta{Name: "storage", UID: "u-1", Generation: 3}, Spec: v1.UnderlayNetworkSpec{
		Namespaces: []string{"a", "b"}, SRIOV: &v1.SRIOVNetwork{ResourceName: "intel.com/vf", Vlan: 12}}}
	out, err := runPlugin(t, fakeAPI(t, net), "", newRenderCommand, "storage")
	if err != nil {
		t.Fatal(err)
	}
	docs := strings.Split(out, "\n---\n")
	if len(docs) != 2 {
		t.Fatalf("%d documents, want one per namespace:\n%s", len(docs), out)
	}
	rendered, _ := nadgen.Render(net)
	for i, ns := range []string{"a", "b"} {
		want, _ := yaml.Marshal(rendered.NAD(net, ns))
		if strings.TrimSpace(docs[i]) != strings.TrimSpace(string(want)) {
			t.Errorf("document %d:\n%s\nwant:\n%s", i, docs[i], want)
		}
	}
	for _, s := range []string{"namespace: a", "k8s.v1.cni.cncf.io/resourceName: intel.com/vf", `"vlan":12`, "uid: u-1", `underpool.io/network-generation: "3"`} {
		if !strings.Contains(out, s) {
			t.Errorf("output does not say %q:\n%s", s, out)
		}
	}
}

// render -f prints what a manifest would generate before it is applied, and refuses one
// the webhook would refuse with the webhook's words.
func TestRenderReadsAManifestAndRefusesWhatTheWebhookWould(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "net.yaml")
	writeFile(t, good, `apiVersion: underpool.io/v1
kind: UnderlayNetwork
metadata:
  name: storage
spec:
  namespaces: [shop]
  macvlan: {master: eth1, vlan: 100}
  ipam: {ipv4Pools: [storage-v4]}
`)
	out, err := runPlugin(t, fakeAPI(t), "", newRenderCommand, "-f", good)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"name: storage", "namespace: shop", `"master":"eth1"`, `"vlan":100`, `"ipv4Pools":["storage-v4"]`} {
		if !strings.Contains(out, s) {
			t.Errorf("output does not say %q:\n%s", s, out)
		}
	}
	if strings.Contains(out, "ownerReferences") {
		t.Errorf("a network read from a file has no UID to own anything:\n%s", out)
	}
	bad := filepath.Join(dir, "bad.yaml")
	writeFile(t, bad, "apiVersion: underpool.io/v1\nkind: UnderlayNetwork\nmetadata: {name: x}\nspec: {namespaces: [shop], macvlan: {master: eth1, mode: l2}}\n")
	if _, err := runPlugin(t, fakeAPI(t), "", newRenderCommand, "-f", bad); err == nil || !strings.Contains(err.Error(), `spec.macvlan.mode: "l2" is not one of bridge`) {
		t.Fatalf("bad manifest: %v", err)
	}
	typo := filepath.Join(dir, "typo.yaml")
	writeFile(t, typo, "apiVersion: underpool.io/v1\nkind: UnderlayNetwork\nmetadata: {name: x}\nspec: {namespaces: [shop], macvlan: {mastr: eth1}}\n")
	if _, err := runPlugin(t, fakeAPI(t), "", newRenderCommand, "-f", typo); err == nil || !strings.Contains(err.Error(), "mastr") {
		t.Fatalf("a misspelt field: %v", err)
	}
	if _, err := runPlugin(t, fakeAPI(t), "", newRenderCommand); err == nil || !strings.Contains(err.Error(), "one of the two") {
		t.Fatalf("neither a name nor a file: %v", err)
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}
