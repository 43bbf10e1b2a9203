package nadgen

import (
	"reflect"
	"strings"
	"testing"

	"k8s.io/utils/ptr"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/chain"
	"github.com/underpool/underpool/netplan"
)

// Every delegate, with every optional part set, renders to a config chain.LoadConf
// accepts, and the plugin reads back what the spec says, field by field.
func TestEveryDelegateRendersToAConfigThePluginReadsBackAsWritten(t *testing.T) {
	full := func(mutate func(*v1.UnderlayNetworkSpec)) *v1.UnderlayNetwork {
		n := macvlanNet()
		n.Spec.Macvlan = nil
		n.Spec.IPAM = v1.NetworkIPAM{IPv4Pools: []string{"a-v4", "b-v4"}, IPv6Pools: []string{"a-v6"}, Timeout: "5s"}
		n.Spec.DefaultRoute = ptr.To(false)
		n.Spec.Routing = &v1.NetworkRouting{DefaultRouteInterface: "net2", PolicyRouting: ptr.To(true), TableBase: 200, RPFilter: ptr.To[int32](1)}
		n.Spec.HostConnectivity = &v1.NetworkHostConnectivity{Enabled: ptr.To(true), NodeAddresses: []string{"192.168.1.10"},
			ServiceCIDRs: []string{"10.96.0.0/12"}, ClusterCIDRs: []string{"10.244.0.0/16", "fd00:244::/56"}}
		n.Spec.Checks = &v1.NetworkChecks{IPConflict: ptr.To(false), Gateway: ptr.To(true), Announce: ptr.To(false), Timeout: "50ms"}
		n.Spec.MACPrefix = "0a:58"
		n.Spec.Routes = []v1.NetworkRoute{{Dst: "192.168.0.0/16", Gw: "10.250.1.253"}, {Dst: "fd00:1::/48"}}
		mutate(&n.Spec)
		return n
	}
	for _, c := range []struct {
		name         string
		net          *v1.UnderlayNetwork
		delegate     map[string]any
		vlan         float64 // the meta-plugin's own vlan (macvlan, ipvlan)
		resourceName string
	}{
		{name: "macvlan", net: full(func(s *v1.UnderlayNetworkSpec) {
			s.Macvlan = &v1.MacvlanNetwork{Master: "bond0", Mode: "private", Vlan: 100, MTU: 9000}
			s.RDMA = &v1.NetworkRDMA{Mode: "shared", ResourceName: "rdma/hca_shared_devices_a"}
		}), delegate: map[string]any{"type": "macvlan", "master": "bond0", "mode": "private", "mtu": 9000.0}, vlan: 100, resourceName: "rdma/hca_shared_devices_a"},
		{name: "macvlan with defaults", net: macvlanNet(), delegate: map[string]any{"type": "macvlan", "master": "eth1", "mode": "bridge"}},
		{name: "ipvlan", net: full(func(s *v1.UnderlayNetworkSpec) { s.Ipvlan = &v1.IpvlanNetwork{Master: "eth2", Mode: "l3s", MTU: 1500} }),
			delegate: map[string]any{"type": "ipvlan", "master": "eth2", "mode": "l3s", "mtu": 1500.0}},
		{name: "ipvlan with defaults", net: full(func(s *v1.UnderlayNetworkSpec) { s.Ipvlan = &v1.IpvlanNetwork{Master: "eth2"} }),
			delegate: map[string]any{"type": "ipvlan", "master": "eth2", "mode": "l2"}},
		{name: "sriov with RDMA", net: full(func(s *v1.UnderlayNetworkSpec) {
			s.SRIOV = &v1.SRIOVNetwork{ResourceName: "mellanox.com/sriov_rdma", Vlan: 42, SpoofCheck: "off", Trust: "on"}
			s.RDMA = &v1.NetworkRDMA{Mode: "exclusive"}
		}), delegate: map[string]any{"type": "sriov", "vlan": 42.0, "spoofchk": "off", "trust": "on"}, resourceName: "mellanox.com/sriov_rdma"},
		{name: "host-device by resource", net: full(func(s *v1.UnderlayNetworkSpec) { s.HostDevice = &v1.HostDeviceNetwork{ResourceName: "intel.com/pf"} }),
			delegate: map[string]any{"type": "host-device"}, resourceName: "intel.com/pf"},
		{name: "host-device by name", net: full(func(s *v1.UnderlayNetworkSpec) { s.HostDevice = &v1.HostDeviceNetwork{Device: "eth3"} }),
			delegate: map[string]any{"type": "host-device", "device": "eth3"}},
		{name: "host-device by PCI address", net: full(func(s *v1.UnderlayNetworkSpec) { s.HostDevice = &v1.HostDeviceNetwork{PCIBusID: "0000:3b:00.2"} }),
			delegate: map[string]any{"type": "host-device", "pciBusID": "0000:3b:00.2"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			r, err := Render(c.net)
			if err != nil {
				t.Fatalf("Render: %v", err)
			}
			conf, raw, err := loadRendered(t, r.Config)
			if err != nil {
				t.Fatalf("chain.LoadConf refuses the rendered config: %v\n%s", err, r.Config)
			}
			if !reflect.DeepEqual(conf.Delegate, c.delegate) {
				t.Errorf("delegate %v, want %v", conf.Delegate, c.delegate)
			}
			if got, _ := raw["vlan"].(float64); got != c.vlan || float64(conf.Vlan) != c.vlan {
				t.Errorf("vlan %v (the plugin reads %d), want %v", raw["vlan"], conf.Vlan, c.vlan)
			}
			if got := r.Annotations[ResourceNameAnnotation]; got != c.resourceName {
				t.Errorf("resourceName annotation %q, want %q", got, c.resourceName)
			}
			requireReadBack(t, &c.net.Spec, conf)
			if r.Name != c.net.NADName() || conf.Name != c.net.NADName() {
				t.Errorf("network name %q (NAD %q), want %q", conf.Name, r.Name, c.net.NADName())
			}
		})
	}
}

// requireReadBack: what the plugin parsed is what the spec says.
func requireReadBack(t *testing.T, s *v1.UnderlayNetworkSpec, conf *chain.NetConf) {
	t.Helper()
	check := func(field string, got, want any) {
		t.Helper()
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: the plugin reads %#v, the spec says %#v", field, got, want)
		}
	}
	check("ipam.ipv4Pools", conf.IPAM.IPv4Pools, s.IPAM.IPv4Pools)
	check("ipam.ipv6Pools", conf.IPAM.IPv6Pools, s.IPAM.IPv6Pools)
	check("ipam.timeout", conf.IPAM.Timeout, s.IPAM.Timeout)
	check("defaultRoute", conf.DefaultRoute, s.DefaultRoute)
	check("macPrefix", conf.MACPrefix, s.MACPrefix)
	check("capabilities", conf.Capabilities, map[string]bool{"ips": true, "mac": true})
	if r := s.Routing; r != nil {
		check("routing.defaultRouteInterface", conf.Routing.DefaultRouteInterface, r.DefaultRouteInterface)
		check("routing.policyRouting", conf.Routing.PolicyRouting, r.PolicyRouting)
		check("routing.tableBase", conf.Routing.TableBase, int(r.TableBase))
		check("routing.rpFilter", *conf.Routing.RPFilter, int(*r.RPFilter))
	}
	if h := s.HostConnectivity; h != nil {
		check("hostConnectivity.enabled", conf.HostConnectivity.Enabled, h.Enabled)
		check("hostConnectivity.nodeAddresses", conf.HostConnectivity.NodeAddresses, h.NodeAddresses)
		check("hostConnectivity.serviceCIDRs", conf.HostConnectivity.ServiceCIDRs, h.ServiceCIDRs)
		check("hostConnectivity.clusterCIDRs", conf.HostConnectivity.ClusterCIDRs, h.ClusterCIDRs)
	}
	if c := s.Checks; c != nil {
		check("checks.ipConflict", conf.Checks.IPConflict, c.IPConflict)
		check("checks.gateway", conf.Checks.Gateway, c.Gateway)
		check("checks.announce", conf.Checks.Announce, c.Announce)
		check("checks.timeout", conf.Checks.Timeout, c.Timeout)
	}
	var routes []netplan.RouteSpec
	for _, r := range s.Routes {
		routes = append(routes, netplan.RouteSpec{Dst: r.Dst, Gw: r.Gw})
	}
	check("routes", conf.Routes, routes)
	wantRDMA := ""
	if s.RDMA != nil {
		wantRDMA = s.RDMA.Mode
	}
	check("rdma.mode", conf.RDMA.Mode, wantRDMA)
}

// The NAD is named after the network unless spec.nadName says otherwise, and the
// conflist declares the cniVersion asked for (1.1.0 by default).
func TestNameAndCNIVersionDefaultsAndOverrides(t *testing.T) {
	n := macvlanNet()
	r, err := Render(n)
	if err != nil {
		t.Fatal(err)
	}
	if r.Name != "storage" || !strings.Contains(r.Config, `"cniVersion":"1.1.0","name":"storage"`) {
		t.Fatalf("defaults: name %q, config %s", r.Name, r.Config)
	}
	n.Spec.NADName, n.Spec.CNIVersion = "storage-net", "0.4.0"
	if r, err = Render(n); err != nil {
		t.Fatal(err)
	}
	if r.Name != "storage-net" || !strings.Contains(r.Config, `"cniVersion":"0.4.0","name":"storage-net"`) {
		t.Fatalf("overrides: name %q, config %s", r.Name, r.Config)
	}
	if _, _, err := loadRendered(t, r.Config); err != nil {
		t.Fatalf("0.4.0: %v", err)
	}
}

// Rendering is deterministic: the controller compares what it rendered with what the NAD
// holds, so the same spec must give the same bytes every time.
func TestRenderingIsDeterministic(t *testing.T) {
	n := macvlanNet()
	n.Spec.Macvlan.MTU, n.Spec.Macvlan.Mode = 1400, "vepa"
	first, _ := Render(n)
	for range 50 {
		if r, _ := Render(n); r.Config != first.Config {
			t.Fatalf("two renders differ:\n%s\n%s", first.Config, r.Config)
		}
	}
}

// The network's routes render into the plugin's routes, as written and in order; a
// network without routes renders no routes key at all.
func TestRoutesRenderIntoThePluginsRoutes(t *testing.T) {
	n := macvlanNet()
	r, err := Render(n)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(r.Config, `"routes"`) {
		t.Fatalf("a network without routes renders some: %s", r.Config)
	}
	n.Spec.Routes = []v1.NetworkRoute{{Dst: "10.0.0.0/8", Gw: "10.250.1.254"}, {Dst: "172.16.0.0/12"}}
	if r, err = Render(n); err != nil {
		t.Fatal(err)
	}
	if want := `"routes":[{"dst":"10.0.0.0/8","gw":"10.250.1.254"},{"dst":"172.16.0.0/12"}]`; !strings.Contains(r.Config, want) {
		t.Fatalf("config %s, want %s", r.Config, want)
	}
	conf, _, err := loadRendered(t, r.Config)
	if err != nil {
		t.Fatal(err)
	}
	requireReadBack(t, &n.Spec, conf)
}
