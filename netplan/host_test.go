package netplan

import (
	"net/netip"
	"strings"
	"testing"
)

func addrs(s ...string) []netip.Addr {
	var out []netip.Addr
	for _, a := range s {
		out = append(out, netip.MustParseAddr(a))
	}
	return out
}

func entries(es []Route) string {
	var out []string
	for _, e := range es {
		s := e.String()
		if e.Src.IsValid() {
			s += " src " + e.Src.String()
		}
		out = append(out, s)
	}
	return strings.Join(out, "; ")
}

func TestBuildHost(t *testing.T) {
	cidrs := []netip.Prefix{netip.MustParsePrefix("10.96.0.0/12"), netip.MustParsePrefix("fd00:96::/108"), netip.MustParsePrefix("10.244.0.1/16")}
	cases := []struct {
		name       string
		in         HostIntent
		pod, node  string
		wantErrStr string
	}{
		{name: "dual stack, own table",
			in: HostIntent{PodAddrs: addrs("10.250.1.10", "fd00:250::10"), NodeAddrs: addrs("10.250.1.2", "192.0.2.7", "fd00:250::2"), CIDRs: cidrs, Table: 101},
			pod: "10.250.1.2/32 src 10.250.1.10; 192.0.2.7/32 src 10.250.1.10; fd00:250::2/128 src fd00:250::10; " +
				"10.96.0.0/12 via 10.250.1.2 src 10.250.1.10; fd00:96::/108 via fd00:250::2 src fd00:250::10; 10.244.0.0/16 via 10.250.1.2 src 10.250.1.10; " +
				"10.250.1.2/32 table 101 src 10.250.1.10; 192.0.2.7/32 table 101 src 10.250.1.10; fd00:250::2/128 table 101 src fd00:250::10; " +
				"10.96.0.0/12 via 10.250.1.2 table 101 src 10.250.1.10; fd00:96::/108 via fd00:250::2 table 101 src fd00:250::10; 10.244.0.0/16 via 10.250.1.2 table 101 src 10.250.1.10",
			node: "10.250.1.10/32; fd00:250::10/128"},
		{name: "IPv4 pod in a dual-stack cluster leaves IPv6 out",
			in:   HostIntent{PodAddrs: addrs("10.250.1.10"), NodeAddrs: addrs("fd00:250::2", "10.250.1.2"), CIDRs: cidrs[:2]},
			pod:  "10.250.1.2/32 src 10.250.1.10; 10.96.0.0/12 via 10.250.1.2 src 10.250.1.10",
			node: "10.250.1.10/32"},
		{name: "no node address of the pod's family",
			in: HostIntent{PodAddrs: addrs("fd00:250::10"), NodeAddrs: addrs("10.250.1.2")}, wantErrStr: "none of the node's addresses"},
		{name: "a CIDR the node cannot route",
			in:         HostIntent{PodAddrs: addrs("10.250.1.10", "fd00:250::10"), NodeAddrs: addrs("10.250.1.2"), CIDRs: cidrs[1:2]},
			wantErrStr: "fd00:96::/108 needs a node address of its family"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p, err := BuildHost(c.in)
			if c.wantErrStr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErrStr) {
					t.Fatalf("error %v, want %q", err, c.wantErrStr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := entries(p.Pod); got != c.pod {
				t.Errorf("pod routes\n got %s\nwant %s", got, c.pod)
			}
			if got := entries(p.Node); got != c.node {
				t.Errorf("node routes\n got %s\nwant %s", got, c.node)
			}
		})
	}
}
