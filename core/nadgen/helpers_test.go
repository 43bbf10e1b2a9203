package nadgen

import (
	"encoding/json"
	"testing"

	"github.com/containernetworking/cni/libcni"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/chain"
	"github.com/underpool/underpool/chain/ipamplugin"
)

// macvlanNet is a small good network the tests change one field of.
func macvlanNet() *v1.UnderlayNetwork {
	return &v1.UnderlayNetwork{ObjectMeta: metav1.ObjectMeta{Name: "storage"}, Spec: v1.UnderlayNetworkSpec{
		Namespaces: []string{"default"}, Macvlan: &v1.MacvlanNetwork{Master: "eth1"},
		IPAM: v1.NetworkIPAM{IPv4Pools: []string{"storage-v4"}}}}
}

// loadRendered reads a rendered config as a node's plugin does: libcni splits the
// conflist and hands each plugin its config with the list's name and cniVersion, and
// chain.LoadConf parses it (the node's paths unset: the config alone decides).
func loadRendered(t *testing.T, config string) (*chain.NetConf, map[string]any, error) {
	t.Helper()
	t.Setenv(ipamplugin.SocketEnv, "")
	t.Setenv(ipamplugin.LogDirEnv, "")
	list, err := libcni.ConfListFromBytes([]byte(config))
	if err != nil {
		t.Fatalf("the rendered config is no conflist libcni reads: %v\n%s", err, config)
	}
	if len(list.Plugins) != 1 || list.Plugins[0].Network.Type != "underpool" {
		t.Fatalf("want one underpool plugin, got %d: %s", len(list.Plugins), config)
	}
	raw := map[string]any{}
	if err := json.Unmarshal(list.Plugins[0].Bytes, &raw); err != nil {
		t.Fatal(err)
	}
	raw["name"], raw["cniVersion"] = list.Name, list.CNIVersion
	data, err := json.Marshal(raw)
	if err != nil {
		t.Fatal(err)
	}
	conf, err := chain.LoadConf(data)
	return conf, raw, err
}
