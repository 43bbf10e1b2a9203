package deploy

import (
	"fmt"
	"path"
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/underpool/underpool/tests/harness"
)

// ipamd needs no privilege: no netlink, no capability, not root. Every install path
// (kustomize, the chart's defaults, the chart with every value set) runs it as a non-root
// user with every capability dropped; its init container is root with none (to write the
// host's CNI bin dir and hand the socket directory to ipamd's group), and that group is
// the one ipamd runs as, one the init container is in, and the socket directory is the
// one ipamd's socket lives in.
func TestIpamdRunsAsNonRootWithNoCapability(t *testing.T) {
	renders := map[string]func() ([]unstructured.Unstructured, []byte, error){
		"kustomize": func() ([]unstructured.Unstructured, []byte, error) { return harness.RenderKustomize(repo("deploy")) },
		"chart": func() ([]unstructured.Unstructured, []byte, error) {
			return harness.RenderChart(chartDir(), "--namespace", namespace)
		},
		"chart, all set": func() ([]unstructured.Unstructured, []byte, error) {
			return harness.RenderChart(chartDir(), "--namespace", namespace, "-f", "testdata/values-all.yaml")
		},
	}
	for name, render := range renders {
		t.Run(name, func(t *testing.T) {
			objs, _, err := render()
			if err != nil {
				t.Fatal(err)
			}
			ds, ok := index(objs)["DaemonSet/"+namespace+"/underpool-ipamd"]
			if !ok {
				t.Fatal("no ipamd DaemonSet")
			}
			pod, _, _ := unstructured.NestedMap(ds.Object, "spec", "template", "spec")
			ipamd, install := container(t, pod, "containers", "ipamd"), container(t, pod, "initContainers", "install-cni")

			sc := securityContext(ipamd)
			if sc["runAsNonRoot"] != true {
				t.Errorf("ipamd: runAsNonRoot %v, want true", sc["runAsNonRoot"])
			}
			uid, gid := num(sc["runAsUser"]), num(sc["runAsGroup"])
			if uid <= 0 || gid <= 0 {
				t.Errorf("ipamd: runAsUser %v runAsGroup %v, want both set and not root", sc["runAsUser"], sc["runAsGroup"])
			}
			noPrivilege(t, "ipamd", sc)
			if v := securityContext(install)["runAsUser"]; num(v) != 0 {
				t.Errorf("install-cni: runAsUser %v, want 0 (the host's CNI bin dir is root's)", v)
			}
			noPrivilege(t, "install-cni", securityContext(install))

			groups, _, _ := unstructured.NestedSlice(pod, "securityContext", "supplementalGroups")
			if !slices.ContainsFunc(groups, func(g any) bool { return num(g) == gid }) {
				t.Errorf("pod supplementalGroups %v lack ipamd's group %d: the installer could not hand it the socket directory", groups, gid)
			}
			cmd := strings.Join(strs(install["command"]), " ")
			if want := fmt.Sprintf("--socket-dir-group=%d", gid); !strings.Contains(cmd, want) {
				t.Errorf("install-cni command %q lacks %s", cmd, want)
			}
			socket := flagValue(strs(ipamd["args"]), "--socket")
			dir := flagValue(strings.Fields(cmd), "--socket-dir")
			if socket == "" || dir == "" || mountOf(t, ipamd, path.Dir(socket)) != mountOf(t, install, dir) {
				t.Errorf("ipamd's socket %q and the directory the installer prepares %q are not one volume", socket, dir)
			}
		})
	}
}

// ipamd.socketGroup reaches ipamd's flag and the groups it runs in (it gives the socket
// to that group as its owner, which needs no capability only for a group it is in).
func TestChartSocketGroupIsAGroupIpamdIsIn(t *testing.T) {
	objs, _, err := harness.RenderChart(chartDir(), "--namespace", namespace, "--set", "ipamd.socketGroup=4242")
	if err != nil {
		t.Fatal(err)
	}
	ds := index(objs)["DaemonSet/"+namespace+"/underpool-ipamd"]
	pod, _, _ := unstructured.NestedMap(ds.Object, "spec", "template", "spec")
	if args := strs(container(t, pod, "containers", "ipamd")["args"]); !slices.Contains(args, "--socket-group=4242") {
		t.Errorf("ipamd args %v lack --socket-group=4242", args)
	}
	groups, _, _ := unstructured.NestedSlice(pod, "securityContext", "supplementalGroups")
	if !slices.ContainsFunc(groups, func(g any) bool { return num(g) == 4242 }) {
		t.Errorf("pod supplementalGroups %v lack the socket group 4242", groups)
	}
}

func container(t *testing.T, pod map[string]any, list, name string) map[string]any {
	t.Helper()
	cs, _, _ := unstructured.NestedSlice(pod, list)
	for _, c := range cs {
		if m := c.(map[string]any); m["name"] == name {
			return m
		}
	}
	t.Fatalf("no %s %s", list, name)
	return nil
}

func securityContext(c map[string]any) map[string]any {
	sc, _ := c["securityContext"].(map[string]any)
	return sc
}

// noPrivilege: no escalation, every capability dropped and none added.
func noPrivilege(t *testing.T, name string, sc map[string]any) {
	t.Helper()
	if sc["allowPrivilegeEscalation"] != false {
		t.Errorf("%s: allowPrivilegeEscalation %v, want false", name, sc["allowPrivilegeEscalation"])
	}
	if sc["privileged"] == true {
		t.Errorf("%s is privileged", name)
	}
	caps, _ := sc["capabilities"].(map[string]any)
	if drop, _ := caps["drop"].([]any); len(drop) != 1 || drop[0] != "ALL" {
		t.Errorf("%s: capabilities.drop %v, want [ALL]", name, caps["drop"])
	}
	if add, ok := caps["add"]; ok {
		t.Errorf("%s: capabilities.add %v, want none", name, add)
	}
}

// num reads a YAML number (int64 or float64 once decoded); -1 when absent.
func num(v any) int64 {
	switch n := v.(type) {
	case int64:
		return n
	case float64:
		return int64(n)
	case int:
		return int64(n)
	}
	return -1
}

func flagValue(args []string, name string) string {
	for _, a := range args {
		if v, ok := strings.CutPrefix(a, name+"="); ok {
			return v
		}
	}
	return ""
}

// mountOf names the volume mounted at dir in the container.
func mountOf(t *testing.T, c map[string]any, dir string) string {
	t.Helper()
	mounts, _ := c["volumeMounts"].([]any)
	for _, m := range mounts {
		if mm := m.(map[string]any); mm["mountPath"] == dir {
			return mm["name"].(string)
		}
	}
	t.Errorf("%s mounts nothing at %s", c["name"], dir)
	return ""
}
