package examples

import (
	"strings"
	"testing"

	"github.com/containernetworking/cni/libcni"

	"github.com/underpool/underpool/chain"
	"github.com/underpool/underpool/chain/ipamplugin"
	"github.com/underpool/underpool/core/allocator"
)

// Every example is valid: networks through libcni and the plugins' own config loader,
// pools through the allocator's spec parser. (tests/e2e/cni runs them for real.)
func TestEveryExampleIsValid(t *testing.T) {
	all, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	if len(all) < 5 {
		t.Fatalf("only %d examples found in conflist-examples/ (embedded)", len(all))
	}
	networks, pools := map[string]bool{}, map[string]bool{}
	for _, ex := range all {
		if ex.Pool != nil {
			pools[ex.Name] = true
		}
	}
	for _, ex := range all {
		if ex.Pod != nil {
			continue // checked below, against the networks
		}
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
			var conf *ipamplugin.NetConf
			switch {
			case p.Network.Type == "underpool":
				var meta *chain.NetConf
				if meta, err = chain.LoadConf(p.Bytes); err == nil {
					conf = &meta.NetConf
				}
			case p.Network.IPAM.Type == "underpool-ipam":
				conf, err = ipamplugin.LoadConf(p.Bytes)
			case !strings.HasPrefix(p.Network.Type, "multus"):
				t.Errorf("%s: plugin %s uses neither underpool nor underpool-ipam", ex.File, p.Network.Type)
			}
			if err != nil {
				t.Errorf("%s: %v", ex.File, err)
				continue
			}
			if conf != nil {
				for _, pool := range append(conf.IPAM.IPv4Pools, conf.IPAM.IPv6Pools...) {
					if !pools[pool] {
						t.Errorf("%s: network %s names IPPool %s, which ippools.yaml does not define", ex.File, list.Name, pool)
					}
				}
			}
		}
		networks[list.Name] = true
	}
	for _, ex := range all {
		for _, n := range ex.Pod {
			if !networks[n.Name] {
				t.Errorf("%s: Pod %s asks for network %s, which no example defines", ex.File, ex.Name, n.Name)
			}
		}
	}
}

// The cases users look for each have an example.
func TestExamplesCoverTheCommonCases(t *testing.T) {
	all, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	var text []string
	for _, ex := range all {
		if ex.Conflist != nil {
			text = append(text, string(ex.Conflist))
		}
	}
	has := func(parts ...string) bool {
		for _, c := range text {
			all := true
			for _, p := range parts {
				all = all && strings.Contains(c, p)
			}
			if all {
				return true
			}
		}
		return false
	}
	for name, parts := range map[string][]string{
		"plain macvlan with underpool-ipam": {`"type": "macvlan"`, `"underpool-ipam"`},
		"dual stack":                        {`"ipv4Pools"`, `"ipv6Pools"`},
		"ipvlan l2":                         {`"type": "ipvlan"`, `"mode": "l2"`},
		"sriov with RDMA exclusive":         {`"type": "sriov"`, `"mode": "exclusive"`},
		"macvlan with RDMA shared":          {`"type": "macvlan"`, `"mode": "shared"`},
		"multi-NIC with policy routing":     {`"defaultRoute": false`, `"policyRouting": true`},
		"host connectivity service CIDRs":   {`"serviceCIDRs"`},
		"a bond with a VLAN on top":         {`"bond"`, `"slaves"`, `"vlan"`},
	} {
		if !has(parts...) {
			t.Errorf("no example for %s (a network config containing %v)", name, parts)
		}
	}
	pods, generated := 0, 0
	for _, ex := range all {
		if ex.Pod != nil {
			pods++
		}
		if ex.Network != nil {
			generated++
		}
	}
	if generated == 0 {
		t.Error("no example of a network written as an UnderlayNetwork (the controller generates its NAD)")
	}
	if pods < 2 {
		t.Errorf("want pods showing multi-NIC and overlay + underlay attachments, found %d", pods)
	}
}
