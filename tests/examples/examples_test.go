package examples

import (
	"strings"
	"testing"

	"github.com/containernetworking/cni/libcni"

	"github.com/underpool/underpool/chain"
	"github.com/underpool/underpool/ipamd/allocator"
)

// Every example is valid: networks through libcni and the plugins' own config loader,
// pools through the allocator's spec parser. (tests/e2e runs them for real.)
func TestEveryExampleIsValid(t *testing.T) {
	all, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	if len(all) < 5 {
		t.Fatalf("only %d examples found in %s", len(all), Dir())
	}
	for _, ex := range all {
		if ex.Pool != nil {
			if _, err := allocator.NewPool(ex.Pool.Name, &ex.Pool.Spec); err != nil {
				t.Errorf("%s: IPPool %s: %v", ex.File, ex.Name, err)
			}
			continue
		}
		list, err := libcni.ConfListFromBytes(ex.Conflist)
		if err != nil {
			t.Fatalf("%s: %v", ex.File, err)
		}
		for _, p := range list.Plugins {
			switch {
			case p.Network.Type == "underpool":
				_, err = chain.LoadConf(p.Bytes, true)
			case p.Network.IPAM.Type == "underpool-ipam":
				_, err = chain.LoadConf(p.Bytes, false)
			case !strings.HasPrefix(p.Network.Type, "multus"):
				t.Errorf("%s: plugin %s uses neither underpool nor underpool-ipam", ex.File, p.Network.Type)
			}
			if err != nil {
				t.Errorf("%s: %v", ex.File, err)
			}
		}
	}
}
