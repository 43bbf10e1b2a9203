package importer

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"sort"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	v1 "github.com/underpool/underpool/api/v1"
)

// nadGVK is multus' NetworkAttachmentDefinition, read as unstructured like the peers'
// kinds: whereabouts keeps a range's gateway and routes there, in the ipam config, not in
// its IPPools.
var nadGVK = schema.GroupVersionKind{Group: "k8s.cni.cncf.io", Version: "v1", Kind: "NetworkAttachmentDefinition"}

// whereaboutsNetwork is the whereabouts ipam config of one NetworkAttachmentDefinition.
type whereaboutsNetwork struct {
	nad     string // namespace/name
	name    string // network_name: whereabouts names its IPPools <network_name>-<range>
	ranges  []netip.Prefix
	gateway netip.Addr
	routes  []v1.Route
}

// whereaboutsIPAM is the part of the ipam config the import reads.
type whereaboutsIPAM struct {
	Type     string `json:"type"`
	Range    string `json:"range"`
	IPRanges []struct {
		Range string `json:"range"`
	} `json:"ipRanges"`
	Gateway     string     `json:"gateway"`
	Routes      []v1.Route `json:"routes"`
	NetworkName string     `json:"network_name"`
}

// whereaboutsNetworks reads the whereabouts ipam configs of every NAD. A NAD whose config
// does not parse is noted and left out: it cannot be what a running pod was set up with.
func (r *whereaboutsReader) whereaboutsNetworks(nads []unstructured.Unstructured) []whereaboutsNetwork {
	var out []whereaboutsNetwork
	for i := range nads {
		u := &nads[i]
		name := u.GetNamespace() + "/" + u.GetName()
		config, _, _ := unstructured.NestedString(u.Object, "spec", "config")
		ipams, err := ipamsOf(config)
		if err != nil {
			r.st.notes = append(r.st.notes, fmt.Sprintf("NetworkAttachmentDefinition %s: spec.config is not CNI JSON (%v): no gateway or routes read from it", name, err))
			continue
		}
		for _, ipam := range ipams {
			if ipam.Type == "whereabouts" {
				out = append(out, r.whereaboutsNetwork(name, ipam))
			}
		}
	}
	return out
}

// ipamsOf returns the ipam section of a single-plugin config, or of each plugin of a
// conflist.
func ipamsOf(config string) ([]whereaboutsIPAM, error) {
	var conf struct {
		IPAM    *whereaboutsIPAM `json:"ipam"`
		Plugins []struct {
			IPAM *whereaboutsIPAM `json:"ipam"`
		} `json:"plugins"`
	}
	if err := json.Unmarshal([]byte(config), &conf); err != nil {
		return nil, err
	}
	var out []whereaboutsIPAM
	if conf.IPAM != nil {
		out = append(out, *conf.IPAM)
	}
	for _, p := range conf.Plugins {
		if p.IPAM != nil {
			out = append(out, *p.IPAM)
		}
	}
	return out, nil
}

func (r *whereaboutsReader) whereaboutsNetwork(nad string, ipam whereaboutsIPAM) whereaboutsNetwork {
	n := whereaboutsNetwork{nad: nad, name: ipam.NetworkName}
	texts := []string{ipam.Range}
	for _, ir := range ipam.IPRanges {
		texts = append(texts, ir.Range)
	}
	for _, t := range texts {
		if p, ok := whereaboutsRange(t); ok {
			n.ranges = append(n.ranges, p)
		}
	}
	if ipam.Gateway != "" {
		gw, err := netip.ParseAddr(ipam.Gateway)
		if err != nil {
			r.st.notes = append(r.st.notes, fmt.Sprintf("NetworkAttachmentDefinition %s: ipam gateway %q is not an IP address: not imported", nad, ipam.Gateway))
		} else {
			n.gateway = gw.Unmap()
		}
	}
	for i, rt := range ipam.Routes {
		if err := validRoute(rt); err != nil {
			r.st.notes = append(r.st.notes, fmt.Sprintf("NetworkAttachmentDefinition %s: ipam routes[%d] %v: not imported", nad, i, err))
			continue
		}
		n.routes = append(n.routes, rt)
	}
	return n
}

// whereaboutsRange reads a range as whereabouts accepts it: a CIDR, or
// "first-last/bits" (an old form), masked.
func whereaboutsRange(s string) (netip.Prefix, bool) {
	s = strings.TrimSpace(s)
	if s == "" {
		return netip.Prefix{}, false
	}
	if addrs, bits, ok := strings.Cut(s, "/"); ok {
		first, _, _ := strings.Cut(addrs, "-")
		if p, err := netip.ParsePrefix(first + "/" + bits); err == nil {
			return p.Masked(), true
		}
	}
	return netip.Prefix{}, false
}

func validRoute(rt v1.Route) error {
	dst, err := netip.ParsePrefix(rt.Dst)
	if err != nil {
		return fmt.Errorf("dst %q is not a CIDR", rt.Dst)
	}
	if rt.Gw == "" {
		return nil
	}
	gw, err := netip.ParseAddr(rt.Gw)
	if err != nil {
		return fmt.Errorf("gw %q is not an IP address", rt.Gw)
	}
	if gw.Unmap().Is4() != dst.Addr().Unmap().Is4() {
		return fmt.Errorf("gw %s and dst %s are of two families", rt.Gw, rt.Dst)
	}
	return nil
}

// gatewayAndRoutes gives an imported pool the gateway and routes of the NADs whose
// whereabouts range is the pool's (and, when a NAD names its network, whose IPPool name
// whereabouts derives from it): the gateway when the subnet holds it, the routes of the
// subnet's family. NADs that disagree give none, with a note naming them.
func (r *whereaboutsReader) gatewayAndRoutes(from, poolName, poolObject string, subnet netip.Prefix, spec *v1.IPPoolSpec) {
	var matched []whereaboutsNetwork
	for _, n := range r.networks {
		if n.name != "" && !strings.HasPrefix(poolObject, n.name+"-") {
			continue
		}
		for _, rng := range n.ranges {
			if rng == subnet {
				matched = append(matched, n)
				break
			}
		}
	}
	if len(matched) == 0 {
		return
	}
	gw, routes := familyGatewayAndRoutes(matched[0], subnet)
	var nads []string
	for _, n := range matched {
		nads = append(nads, n.nad)
		g, rts := familyGatewayAndRoutes(n, subnet)
		if g != gw || fmt.Sprint(rts) != fmt.Sprint(routes) {
			sort.Strings(nads)
			r.st.notes = append(r.st.notes, fmt.Sprintf("%s: the NetworkAttachmentDefinitions of its range give different gateways or routes (%s and %s): IPPool %s gets none; set spec.gateway and spec.routes yourself",
				from, matched[0].nad, n.nad, poolName))
			return
		}
	}
	if gw.IsValid() {
		spec.Gateway = gw.String()
	}
	spec.Routes = routes
	if gw.IsValid() || len(routes) > 0 {
		r.st.notes = append(r.st.notes, fmt.Sprintf("%s: IPPool %s takes gateway %q and %d route(s) from NetworkAttachmentDefinition %s",
			from, poolName, spec.Gateway, len(routes), strings.Join(nads, ", ")))
	}
}

// familyGatewayAndRoutes is what of n's gateway and routes belongs to subnet: one ipam
// config may hold an IPv4 and an IPv6 range, and whereabouts' single gateway serves the
// range that holds it. A whereabouts route without gw leads through the gateway (the CNI
// plugins fill it in); an underpool route without gw is on-link, so the gateway is
// written into it.
func familyGatewayAndRoutes(n whereaboutsNetwork, subnet netip.Prefix) (netip.Addr, []v1.Route) {
	var gw netip.Addr
	if n.gateway.IsValid() && subnet.Contains(n.gateway) {
		gw = n.gateway
	}
	var routes []v1.Route
	for _, rt := range n.routes {
		if dst := netip.MustParsePrefix(rt.Dst); dst.Addr().Unmap().Is4() == subnet.Addr().Is4() {
			if rt.Gw == "" && gw.IsValid() {
				rt.Gw = gw.String()
			}
			routes = append(routes, rt)
		}
	}
	return gw, routes
}
