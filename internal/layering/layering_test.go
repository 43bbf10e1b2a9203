package layering

import (
	"os/exec"
	"strings"
	"testing"
)

// TestPackagesImportOnlyWhatTheirLayerMay checks every package of the module (tests'
// own imports aside) against Rules.
func TestPackagesImportOnlyWhatTheirLayerMay(t *testing.T) {
	out, err := exec.Command("go", "list", "-f", "{{.ImportPath}} {{join .Imports \" \"}}", Module+"/...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	imports := map[string][]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		imports[f[0]] = f[1:]
	}
	if len(imports) < 20 {
		t.Fatalf("go list found %d packages: not run from inside the module?", len(imports))
	}
	for _, v := range Violations(imports) {
		t.Error(v)
	}
}

// TestTheRulesCatchAWrongImport: a checker that finds nothing proves nothing.
func TestTheRulesCatchAWrongImport(t *testing.T) {
	m := Module + "/"
	got := Violations(map[string][]string{
		m + "controller":       {m + "ipamd/daemon", m + "ipamd/store", m + "controller/orphans"},
		m + "kubectlplugin":    {m + "ipamd/service", m + "core/recycle", m + "api/v1"},
		m + "core/allocator":   {m + "ipamd/store", "k8s.io/api/core/v1"},
		m + "chain/ipamplugin": {m + "underlay"},
		m + "newtree/x":        nil,
	})
	want := []string{
		"chain/ipamplugin imports underlay",
		"controller imports ipamd/daemon",
		"core/allocator imports ipamd/store",
		"kubectlplugin imports ipamd/service",
		"newtree/x: no layering rule covers it",
	}
	if len(got) != len(want) {
		t.Fatalf("got %d violations, want %d:\n%s", len(got), len(want), strings.Join(got, "\n"))
	}
	for i := range want {
		if !strings.HasPrefix(got[i], want[i]) {
			t.Errorf("violation %d: got %q, want it to start %q", i, got[i], want[i])
		}
	}
}

// clusterClients are the libraries that read and write the cluster.
var clusterClients = []string{"k8s.io/client-go/", "sigs.k8s.io/controller-runtime/"}

// TestTheCoreLinksNoClusterClient: what decides (the core), the API types, the socket
// protocol and the network plan are pure; a client in them would let a decision depend on
// a read nobody ordered, and would grow every binary that links them (the kubectl plugin,
// underpool-ipam).
func TestTheCoreLinksNoClusterClient(t *testing.T) {
	for _, pkg := range []string{"./core/...", "./api/...", "./rpc/...", "./netplan/..."} {
		out, err := exec.Command("go", "list", "-deps", "../../"+strings.TrimPrefix(pkg, "./")).CombinedOutput()
		if err != nil {
			t.Fatalf("go list -deps %s: %v\n%s", pkg, err, out)
		}
		for _, dep := range strings.Fields(string(out)) {
			for _, c := range clusterClients {
				if strings.HasPrefix(dep, c) {
					t.Errorf("%s links %s: keep cluster reads and writes in ipamd/ or controller/ and pass the core what they read", pkg, dep)
				}
			}
		}
	}
}
