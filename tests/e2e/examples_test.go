package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/underpool/underpool/tests/examples"
	"github.com/underpool/underpool/tests/harness"
)

// Each example network runs for real here: its pools are created from ippools.yaml, its
// master is swapped for a throw-away veth parent and its socket for the suite's ipamd.
func TestConflistExamplesRun(t *testing.T) {
	all, err := examples.Load()
	if err != nil {
		t.Fatal(err)
	}
	for _, ex := range all {
		if ex.Pool != nil {
			pool := ex.Pool.DeepCopy()
			if err := suite.client.Create(ctx(t), pool); err != nil {
				t.Fatalf("creating example pool %s: %v", pool.Name, err)
			}
			t.Cleanup(func() { _ = suite.client.Delete(context.Background(), pool) })
		}
	}
	ns := newNamespace(t)
	for i, ex := range all {
		if ex.Conflist == nil {
			continue
		}
		t.Run(ex.Name, func(t *testing.T) {
			conf := localise(t, ex.Conflist, newParent(t))
			pod := newPodNS(t)
			rt := runtimeFor(pod, ns, fmt.Sprintf("example-%d", i), "net1")
			res, err := suite.cni.Add(ctx(t), conf, rt)
			if err != nil {
				t.Fatalf("ADD: %v", err)
			}
			v4, v6 := ipsOf(t, res)
			if len(v4)+len(v6) == 0 {
				t.Fatal("no address")
			}
			for _, ip := range append(v4, v6...) {
				if ok, err := harness.HasAddr(pod.Path(), "net1", ip); err != nil || !ok {
					t.Fatalf("net1 lacks %s (%v)", ip, err)
				}
			}
			if err := suite.cni.Del(ctx(t), conf, rt); err != nil {
				t.Fatalf("DEL: %v", err)
			}
		})
	}
	if eps := endpoints(t, ns); len(eps) != 0 {
		t.Fatalf("Endpoints left after the examples: %d", len(eps))
	}
}

// localise points an example at this machine: master eth1 becomes the veth parent, the
// ipamd socket the suite's.
func localise(t *testing.T, conflist []byte, parent string) []byte {
	t.Helper()
	var list map[string]any
	if err := json.Unmarshal(bytes.ReplaceAll(conflist, []byte(`"eth1"`), []byte(`"`+parent+`"`)), &list); err != nil {
		t.Fatal(err)
	}
	for _, p := range list["plugins"].([]any) {
		plugin := p.(map[string]any)
		if ipam, ok := plugin["ipam"].(map[string]any); ok {
			ipam["socket"] = suite.ipamd.Options.Socket
		}
	}
	return mustJSON(t, list)
}
