package nadgen

import (
	"strings"
	"testing"

	"k8s.io/utils/ptr"

	v1 "github.com/underpool/underpool/api/v1"
)

// Each refusal names the field, what is wrong and the fix; a spec with several faults
// gets them all at once.
func TestValidateNamesTheFieldAndTheFix(t *testing.T) {
	for _, c := range []struct {
		name   string
		mutate func(*v1.UnderlayNetworkSpec)
		want   []string
	}{
		{"no delegate", func(s *v1.UnderlayNetworkSpec) { s.Macvlan = nil },
			[]string{"spec: no delegate: set one of spec.macvlan, spec.ipvlan, spec.sriov, spec.hostDevice"}},
		{"two delegates", func(s *v1.UnderlayNetworkSpec) { s.SRIOV = &v1.SRIOVNetwork{ResourceName: "a/b"} },
			[]string{"spec: spec.macvlan and spec.sriov are all set: keep exactly one"}},
		{"no namespace", func(s *v1.UnderlayNetworkSpec) { s.Namespaces = nil }, []string{"spec.namespaces: is empty: name the namespaces"}},
		{"a bad and a repeated namespace", func(s *v1.UnderlayNetworkSpec) { s.Namespaces = []string{"Default", "a", "a"} },
			[]string{`spec.namespaces[0]: "Default" is not a namespace name`, `spec.namespaces[2]: "a" is named twice`}},
		{"a bad NAD name", func(s *v1.UnderlayNetworkSpec) { s.NADName = "under_pool" }, []string{`spec.nadName: "under_pool"`}},
		{"an unknown CNI version", func(s *v1.UnderlayNetworkSpec) { s.CNIVersion = "2.0.0" },
			[]string{`spec.cniVersion: "2.0.0" is not one the plugins speak: use one of 0.3.1, 0.4.0, 1.0.0, 1.1.0`}},
		{"no master", func(s *v1.UnderlayNetworkSpec) { s.Macvlan.Master = "" }, []string{"spec.macvlan.master: is empty: name the node's interface, e.g. eth1"}},
		{"a master no kernel names", func(s *v1.UnderlayNetworkSpec) { s.Macvlan.Master = "eth1/../x" }, []string{`spec.macvlan.master: "eth1/../x" is not an interface name`}},
		{"an ipvlan mode on macvlan", func(s *v1.UnderlayNetworkSpec) { s.Macvlan.Mode = "l2" },
			[]string{`spec.macvlan.mode: "l2" is not one of bridge, private, vepa, passthru`}},
		{"a macvlan mode on ipvlan", func(s *v1.UnderlayNetworkSpec) {
			s.Macvlan, s.Ipvlan = nil, &v1.IpvlanNetwork{Master: "eth1", Mode: "bridge"}
		},
			[]string{`spec.ipvlan.mode: "bridge" is not one of l2, l3, l3s`}},
		{"VLAN 4095", func(s *v1.UnderlayNetworkSpec) { s.Macvlan.Vlan = 4095 }, []string{"spec.macvlan.vlan: 4095 must be between 1 and 4094 (0: untagged)"}},
		{"a tiny MTU", func(s *v1.UnderlayNetworkSpec) { s.Macvlan.MTU = 60 }, []string{"spec.macvlan.mtu: 60 is below IPv4's minimum of 68"}},
		{"an IPv6 network under 1280", func(s *v1.UnderlayNetworkSpec) { s.Macvlan.MTU, s.IPAM.IPv6Pools = 1200, []string{"v6"} },
			[]string{"spec.macvlan.mtu: 1200 is below IPv6's minimum of 1280 and the network has IPv6 pools"}},
		{"sriov without its resource", func(s *v1.UnderlayNetworkSpec) { s.Macvlan, s.SRIOV = nil, &v1.SRIOVNetwork{Trust: "yes"} },
			[]string{"spec.sriov.resourceName: is empty: name the SR-IOV device plugin's resource", `spec.sriov.trust: "yes" must be on or off`}},
		{"host-device by name and by PCI address", func(s *v1.UnderlayNetworkSpec) {
			s.Macvlan, s.HostDevice = nil, &v1.HostDeviceNetwork{Device: "eth2", PCIBusID: "3b:00.2"}
		}, []string{"spec.hostDevice: set exactly one of device, pciBusID, resourceName", `spec.hostDevice.pciBusID: "3b:00.2" is not a PCI address such as 0000:3b:00.2`}},
		{"a CIDR for a pool", func(s *v1.UnderlayNetworkSpec) { s.IPAM.IPv4Pools = []string{"10.0.0.0/24"} },
			[]string{`spec.ipam.ipv4Pools[0]: "10.0.0.0/24" is a CIDR: name an IPPool object instead`}},
		{"one pool in both families", func(s *v1.UnderlayNetworkSpec) { s.IPAM.IPv6Pools = []string{"storage-v4"} },
			[]string{"spec.ipam.ipv6Pools[0]: IPPool storage-v4 is in ipv4Pools too"}},
		{"a negative IPAM timeout", func(s *v1.UnderlayNetworkSpec) { s.IPAM.Timeout = "-1s" }, []string{`spec.ipam.timeout: "-1s" must be a positive duration`}},
		{"routing out of range", func(s *v1.UnderlayNetworkSpec) {
			s.Routing = &v1.NetworkRouting{TableBase: -1, RPFilter: ptr.To[int32](3), DefaultRouteInterface: "net 1"}
		}, []string{"spec.routing.tableBase: -1 must be between 1 and 2^30", "spec.routing.rpFilter: 3 must be 0 (off), 1 (strict), 2 (loose) or -1", `spec.routing.defaultRouteInterface: "net 1" is not an interface name`}},
		{"host connectivity that does not parse", func(s *v1.UnderlayNetworkSpec) {
			s.HostConnectivity = &v1.NetworkHostConnectivity{NodeAddresses: []string{"10.0.0.1/24"}, ClusterCIDRs: []string{"10.244.0.0"}}
		}, []string{`spec.hostConnectivity.nodeAddresses[0]: "10.0.0.1/24" is not an IP address`, `spec.hostConnectivity.clusterCIDRs[0]: "10.244.0.0" is not a CIDR`}},
		{"a check window past 10s", func(s *v1.UnderlayNetworkSpec) { s.Checks = &v1.NetworkChecks{Timeout: "11s"} },
			[]string{`spec.checks.timeout: "11s" must be a duration between 1ms and 10s`}},
		{"an RDMA mode the kernel has not", func(s *v1.UnderlayNetworkSpec) { s.RDMA = &v1.NetworkRDMA{Mode: "both"} },
			[]string{`spec.rdma.mode: "both" must be exclusive (the device moves into the pod) or shared`}},
		{"an RDMA resource beside the VF's", func(s *v1.UnderlayNetworkSpec) {
			s.Macvlan, s.SRIOV = nil, &v1.SRIOVNetwork{ResourceName: "a/vf"}
			s.RDMA = &v1.NetworkRDMA{Mode: "exclusive", ResourceName: "rdma/hca"}
		}, []string{"spec.rdma.resourceName: is for macvlan and ipvlan"}},
		{"routes that do not parse", func(s *v1.UnderlayNetworkSpec) {
			s.Routes = []v1.NetworkRoute{{Dst: "10.0.0.0"}, {Dst: "fd00::/8", Gw: "10.250.1.1"}, {Dst: "172.16.0.0/12", Gw: "0.0.0.0"}, {Dst: "fd00::/8"}, {Dst: "fd00::1/8"}}
		}, []string{`spec.routes[0]: dst "10.0.0.0" is not a CIDR`, "spec.routes[1]: gw 10.250.1.1 and dst fd00::/8 are of different families",
			"spec.routes[2]: gw 0.0.0.0 is not a unicast address", "spec.routes[4]: dst fd00::/8 is spec.routes[3]'s too: keep one route per destination"}},
		{"a multicast MAC prefix", func(s *v1.UnderlayNetworkSpec) { s.MACPrefix = "01:00" }, []string{`spec.macPrefix: "01:00" is a multicast prefix`}},
	} {
		t.Run(c.name, func(t *testing.T) {
			n := macvlanNet()
			c.mutate(&n.Spec)
			err := Validate(&n.Spec)
			if err == nil {
				t.Fatal("admitted")
			}
			for _, want := range c.want {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not say %q", err, want)
				}
			}
			if _, rerr := Render(n); rerr == nil || rerr.Error() != err.Error() {
				t.Errorf("Render: %v, want Validate's refusal", rerr)
			}
		})
	}
}

// Whatever the plugin's own loader refuses, Validate refuses first: rendered without
// validation, each of these specs makes a config chain.LoadConf refuses, and Validate
// names the same field. (The reverse, that what Validate admits the plugin accepts, is
// FuzzAValidatedSpecRendersToAConfigThePluginAccepts and the read-back test.)
func TestWhatThePluginRefusesTheValidationRefusesToo(t *testing.T) {
	for _, c := range []struct {
		mutate       func(*v1.UnderlayNetworkSpec)
		plugin, spec string // the field as each names it
	}{
		{func(s *v1.UnderlayNetworkSpec) { s.Macvlan.Mode = "l3" }, "delegate.mode", "spec.macvlan.mode"},
		{func(s *v1.UnderlayNetworkSpec) {
			s.Macvlan, s.Ipvlan = nil, &v1.IpvlanNetwork{Master: "eth1", Mode: "vepa"}
		}, "delegate.mode", "spec.ipvlan.mode"},
		{func(s *v1.UnderlayNetworkSpec) { s.Macvlan.Vlan = 4095 }, "vlan 4095", "spec.macvlan.vlan"},
		{func(s *v1.UnderlayNetworkSpec) { s.IPAM.IPv4Pools = []string{""} }, "ipam.ipv4Pools[0]", "spec.ipam.ipv4Pools[0]"},
		{func(s *v1.UnderlayNetworkSpec) { s.IPAM.IPv6Pools = []string{"fd00::/64"} }, "ipam.ipv6Pools[0]", "spec.ipam.ipv6Pools[0]"},
		{func(s *v1.UnderlayNetworkSpec) { s.IPAM.Timeout = "soon" }, "ipam.timeout", "spec.ipam.timeout"},
		{func(s *v1.UnderlayNetworkSpec) { s.Routing = &v1.NetworkRouting{TableBase: -5} }, "routing.tableBase", "spec.routing.tableBase"},
		{func(s *v1.UnderlayNetworkSpec) { s.Routing = &v1.NetworkRouting{RPFilter: ptr.To[int32](-2)} }, "routing.rpFilter", "spec.routing.rpFilter"},
		{func(s *v1.UnderlayNetworkSpec) { s.Checks = &v1.NetworkChecks{Timeout: "0s"} }, "checks.timeout", "spec.checks.timeout"},
		{func(s *v1.UnderlayNetworkSpec) { s.RDMA = &v1.NetworkRDMA{Mode: "Exclusive"} }, "rdma.mode", "spec.rdma.mode"},
		{func(s *v1.UnderlayNetworkSpec) {
			s.HostConnectivity = &v1.NetworkHostConnectivity{NodeAddresses: []string{"node-a"}}
		}, "hostConnectivity.nodeAddresses[0]", "spec.hostConnectivity.nodeAddresses[0]"},
		{func(s *v1.UnderlayNetworkSpec) {
			s.HostConnectivity = &v1.NetworkHostConnectivity{ServiceCIDRs: []string{"10.96.0.0/33"}}
		}, "hostConnectivity.serviceCIDRs[0]", "spec.hostConnectivity.serviceCIDRs[0]"},
		{func(s *v1.UnderlayNetworkSpec) { s.Routes = []v1.NetworkRoute{{Dst: "10.0.0.0"}} }, "routes[0]", "spec.routes[0]"},
		{func(s *v1.UnderlayNetworkSpec) { s.Routes = []v1.NetworkRoute{{Dst: "::/0", Gw: "ff02::1"}} }, "routes[0]", "spec.routes[0]"},
		{func(s *v1.UnderlayNetworkSpec) {
			s.Routes = []v1.NetworkRoute{{Dst: "10.0.0.0/8"}, {Dst: "10.1.0.0/8", Gw: "10.250.1.1"}}
		}, "routes[1]", "spec.routes[1]"},
		{func(s *v1.UnderlayNetworkSpec) { s.MACPrefix = "0a:5" }, "macPrefix", "spec.macPrefix"},
		{func(s *v1.UnderlayNetworkSpec) { s.MACPrefix = "03:58" }, "macPrefix", "spec.macPrefix"},
	} {
		t.Run(c.spec, func(t *testing.T) {
			n := macvlanNet()
			c.mutate(&n.Spec)
			r, err := render(n)
			if err != nil {
				t.Fatal(err)
			}
			if _, _, err := loadRendered(t, r.Config); err == nil || !strings.Contains(err.Error(), c.plugin) {
				t.Fatalf("chain.LoadConf: %v, want a refusal naming %s (the case tests nothing)", err, c.plugin)
			}
			if err := Validate(&n.Spec); err == nil || !strings.Contains(err.Error(), c.spec+":") {
				t.Fatalf("Validate: %v, want a refusal naming %s", err, c.spec)
			}
		})
	}
}

// FuzzAValidatedSpecRendersToAConfigThePluginAccepts: a spec Validate admits renders to a
// config chain.LoadConf accepts, whatever its fields hold; no input panics either.
func FuzzAValidatedSpecRendersToAConfigThePluginAccepts(f *testing.F) {
	f.Add("macvlan", "eth1", "bridge", int32(100), int32(1500), int32(100), int32(2), "30ms", "5s", "0a:58", "10.96.0.0/12", "192.168.1.1", "pool-a", "1.1.0", "shared", "10.0.0.0/8", "10.250.1.1")
	f.Add("ipvlan", "eth1.100", "l3s", int32(0), int32(0), int32(0), int32(-1), "", "", "", "fd00::/64", "fd00::1", "p.v6", "0.4.0", "", "fd00::/8", "")
	f.Add("sriov", "", "", int32(4094), int32(0), int32(1<<30), int32(0), "10s", "1h", "fe:ff", "::/0", "::", "a", "1.0.0", "exclusive", "::/0", "::ffff:10.0.0.1")
	f.Add("hostDevice", "eth3", "", int32(-1), int32(70000), int32(-1), int32(3), "1ns", "0", "01:00", "x", "y", "10.0.0.0/8", "2", "both", "10.0.0.1/8", "fe80::1%eth0")
	f.Fuzz(func(t *testing.T, kind, master, mode string, vlan, mtu, tableBase, rpFilter int32,
		checkTimeout, ipamTimeout, macPrefix, cidr, addr, pool, cniVersion, rdmaMode, routeDst, routeGw string) {
		n := macvlanNet()
		s := &n.Spec
		s.Macvlan = nil
		switch kind {
		case "macvlan":
			s.Macvlan = &v1.MacvlanNetwork{Master: master, Mode: mode, Vlan: vlan, MTU: mtu}
		case "ipvlan":
			s.Ipvlan = &v1.IpvlanNetwork{Master: master, Mode: mode, Vlan: vlan, MTU: mtu}
		case "sriov":
			s.SRIOV = &v1.SRIOVNetwork{ResourceName: "vendor.com/" + master, Vlan: vlan, Trust: mode}
		default:
			s.HostDevice = &v1.HostDeviceNetwork{Device: master}
		}
		s.CNIVersion, s.MACPrefix = cniVersion, macPrefix
		s.IPAM = v1.NetworkIPAM{IPv4Pools: []string{pool}, IPv6Pools: []string{pool + "6"}, Timeout: ipamTimeout}
		s.Routing = &v1.NetworkRouting{TableBase: tableBase, RPFilter: &rpFilter, DefaultRouteInterface: master}
		s.Checks = &v1.NetworkChecks{Timeout: checkTimeout}
		s.HostConnectivity = &v1.NetworkHostConnectivity{NodeAddresses: []string{addr}, ServiceCIDRs: []string{cidr}}
		s.Routes = []v1.NetworkRoute{{Dst: routeDst, Gw: routeGw}, {Dst: cidr}}
		if rdmaMode != "" {
			s.RDMA = &v1.NetworkRDMA{Mode: rdmaMode}
		}
		r, err := Render(n)
		if err != nil {
			return
		}
		if _, _, err := loadRendered(t, r.Config); err != nil {
			t.Fatalf("Validate admitted a spec the plugin refuses: %v\n%s", err, r.Config)
		}
	})
}
