package v1

// Every annotation underpool reads, with its parser. Read this file to learn them: each
// key says where it goes and gives an example value. Parsers are pure (no API access),
// strict (unknown fields and trailing text are refused: a typo must not silently select
// nothing) and return typed values; their errors name the annotation and say what to
// write instead. ipamd parses a pod's annotations once per request and carries the result
// (PodAnnotations), so no later step reads the raw strings again.

import (
	"encoding/json"
	"fmt"
	"math"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
)

// AnnotationPrefix starts every annotation key users set.
const AnnotationPrefix = "ipam.underpool.io/"

// Pod annotations (for subnet, subnets, ippool-ip-number and ippool-reclaim: the pod
// template of the workload, so that its pods carry them too: a Deployment, StatefulSet,
// DaemonSet, ReplicaSet, Job, CronJob (its jobTemplate), or the pods any other controller
// with a scale subresource makes).
const (
	// AnnotationIPPool names the pools for every interface of the pod, per family, earlier
	// preferred:
	//
	//	ipam.underpool.io/ippool: '{"ipv4":["pool-a","pool-b"],"ipv6":["pool-c"]}'
	AnnotationIPPool = AnnotationPrefix + "ippool"
	// AnnotationIPPools names pools per interface (multi-NIC pods); it wins over ippool for
	// the interfaces it lists:
	//
	//	ipam.underpool.io/ippools: '[{"interface":"net1","ipv4":["pool-a"]},{"interface":"net2","ipv6":["pool-c"]}]'
	AnnotationIPPools = AnnotationPrefix + "ippools"
	// AnnotationSubnet asks for a fixed-IP application pool carved from a Subnet for the
	// pod's workload. The Subnets listed per family are tried in order: a new pool comes
	// from the first with room for it, and stays in that Subnet for its whole life:
	//
	//	ipam.underpool.io/subnet: '{"ipv4":["subnet-a"],"ipv6":["subnet-b"]}'
	AnnotationSubnet = AnnotationPrefix + "subnet"
	// AnnotationSubnets is subnet per interface, for multi-NIC workloads; it wins over
	// subnet for the interfaces it lists:
	//
	//	ipam.underpool.io/subnets: '[{"interface":"net1","ipv4":["subnet-a"]},{"interface":"net2","ipv4":["subnet-c"]}]'
	AnnotationSubnets = AnnotationPrefix + "subnets"
	// AnnotationIPNumber sizes an application pool: "N" addresses, or "+N" more than the
	// workload's replicas (absent: exactly the replicas; at most MaxAppPoolIPNumber):
	//
	//	ipam.underpool.io/ippool-ip-number: "+2"
	AnnotationIPNumber = AnnotationPrefix + "ippool-ip-number"
	// AnnotationReclaim says whether an application pool goes with its workload ("true",
	// the default) or stays for the next workload of that name ("false"):
	//
	//	ipam.underpool.io/ippool-reclaim: "false"
	AnnotationReclaim = AnnotationPrefix + "ippool-reclaim"
	// AnnotationRoutes adds pod-level routes, the highest route level (over the Subnet's
	// and the pool's); without "interface" a route applies to every underpool interface:
	//
	//	ipam.underpool.io/routes: '[{"dst":"10.0.0.0/8","gw":"10.250.1.1","interface":"net1"},{"dst":"192.168.0.0/16"}]'
	AnnotationRoutes = AnnotationPrefix + "routes"
	// AnnotationDefaultRouteNIC names the pod interface that holds the default route: eth0
	// (the cluster network's) or one of those k8s.v1.cni.cncf.io/networks gives the pod. It
	// wins over the networks' routing.defaultRouteInterface; a network with defaultRoute
	// false still never takes it:
	//
	//	ipam.underpool.io/default-route-nic: net2
	AnnotationDefaultRouteNIC = AnnotationPrefix + "default-route-nic"
)

// Namespace annotations: default pools for the namespace's pods that name none themselves.
const (
	// AnnotationNSDefaultIPv4 lists the namespace's IPv4 pools, as JSON or comma-separated:
	//
	//	ipam.underpool.io/default-ipv4-ippool: '["pool-a","pool-b"]'   (or "pool-a,pool-b")
	AnnotationNSDefaultIPv4 = AnnotationPrefix + "default-ipv4-ippool"
	// AnnotationNSDefaultIPv6 lists the namespace's IPv6 pools, like AnnotationNSDefaultIPv4:
	//
	//	ipam.underpool.io/default-ipv6-ippool: "pool-v6"
	AnnotationNSDefaultIPv6 = AnnotationPrefix + "default-ipv6-ippool"
)

// MaxAppPoolIPNumber bounds an application pool's size. A pool is carved for one
// workload's pods; a bigger value is a typo or an attack (10^12 on an IPv6 Subnet), and
// refusing it keeps the controller's single worker from spending itself on one workload.
const MaxAppPoolIPNumber = 65536

// PoolNames is an ordered pool list per address family; earlier pools are preferred.
// +kubebuilder:object:generate=false
type PoolNames struct {
	IPv4 []string `json:"ipv4,omitempty"`
	IPv6 []string `json:"ipv6,omitempty"`
}

// Empty reports whether no pool is named.
func (p PoolNames) Empty() bool { return len(p.IPv4) == 0 && len(p.IPv6) == 0 }

// SubnetNames names the Subnets of an application pool per family.
// +kubebuilder:object:generate=false
type SubnetNames struct {
	IPv4 []string `json:"ipv4,omitempty"`
	IPv6 []string `json:"ipv6,omitempty"`
}

// List returns the Subnets named for a family, in the order a new pool tries them.
func (s SubnetNames) List(family IPFamily) []string {
	if family == IPv6 {
		return s.IPv6
	}
	return s.IPv4
}

// First returns the first Subnet named for a family ("" when none).
func (s SubnetNames) First(family IPFamily) string {
	if l := s.List(family); len(l) > 0 {
		return l[0]
	}
	return ""
}

// InterfaceSubnets maps an interface name to its Subnets; the key "" is the subnet
// annotation's, for every interface the subnets annotation does not list.
// +kubebuilder:object:generate=false
type InterfaceSubnets map[string]SubnetNames

// For returns the Subnets an interface uses, and false when the workload names none.
func (m InterfaceSubnets) For(ifName string) (SubnetNames, bool) {
	if s, ok := m[ifName]; ok {
		return s, true
	}
	s, ok := m[""]
	return s, ok
}

// PodRoute is one route of the routes annotation; Interface "" means every interface.
// +kubebuilder:object:generate=false
type PodRoute struct {
	Dst       netip.Prefix // masked
	Gw        netip.Addr   // invalid: on-link
	Interface string
}

// PodAnnotations is what a pod's annotations ask of ipamd, parsed once per request.
// +kubebuilder:object:generate=false
type PodAnnotations struct {
	// IPPool is the ippool annotation; nil when absent.
	IPPool *PoolNames
	// IPPools is the ippools annotation by interface; nil when absent.
	IPPools map[string]PoolNames
	// Subnets holds the subnet (key "") and subnets annotations; nil when both are absent.
	Subnets InterfaceSubnets
	Routes  []PodRoute
	// DefaultRouteNIC is the default-route-nic annotation; "" when absent.
	DefaultRouteNIC string
}

// PoolsFor returns the pools the pod's annotations name for ifName and the annotation
// that named them ("" when none does). ippools wins; an interface it does not list falls
// back to ippool.
func (a PodAnnotations) PoolsFor(ifName string) (PoolNames, string) {
	if p, ok := a.IPPools[ifName]; ok {
		return p, AnnotationIPPools
	}
	if a.IPPool != nil {
		return *a.IPPool, AnnotationIPPool
	}
	return PoolNames{}, ""
}

// RoutesFor returns the routes annotation's routes that apply to ifName, in order.
func (a PodAnnotations) RoutesFor(ifName string) []PodRoute {
	var out []PodRoute
	for _, r := range a.Routes {
		if r.Interface == "" || r.Interface == ifName {
			out = append(out, r)
		}
	}
	return out
}

// ParsePodAnnotations reads every annotation ipamd acts on from a pod: ippool, ippools,
// subnet, subnets and routes. One malformed annotation fails the whole pod, before
// anything is allocated for it.
func ParsePodAnnotations(annotations map[string]string) (PodAnnotations, error) {
	var a PodAnnotations
	var err error
	if a.IPPool, err = ParseIPPool(annotations); err != nil {
		return PodAnnotations{}, err
	}
	if a.IPPools, err = ParseIPPools(annotations); err != nil {
		return PodAnnotations{}, err
	}
	if a.Subnets, err = ParseSubnets(annotations); err != nil {
		return PodAnnotations{}, err
	}
	if a.Routes, err = ParseRoutes(annotations); err != nil {
		return PodAnnotations{}, err
	}
	if a.DefaultRouteNIC, err = ParseDefaultRouteNIC(annotations); err != nil {
		return PodAnnotations{}, err
	}
	return a, nil
}

// ParseIPPool reads the ippool annotation; nil when absent.
func ParseIPPool(annotations map[string]string) (*PoolNames, error) {
	v, ok := annotations[AnnotationIPPool]
	if !ok {
		return nil, nil
	}
	var p PoolNames
	if err := strictJSON(v, &p); err != nil {
		return nil, fmt.Errorf("annotation %s: want JSON like {\"ipv4\":[\"pool-a\",\"pool-b\"],\"ipv6\":[\"pool-c\"]}: %v", AnnotationIPPool, err)
	}
	if err := checkNames(AnnotationIPPool, 0, p.IPv4, p.IPv6); err != nil {
		return nil, err
	}
	if p.Empty() {
		return nil, fmt.Errorf("annotation %s names no pool: give \"ipv4\" and/or \"ipv6\" lists", AnnotationIPPool)
	}
	return &p, nil
}

// ParseIPPools reads the ippools annotation by interface; nil when absent.
func ParseIPPools(annotations map[string]string) (map[string]PoolNames, error) {
	v, ok := annotations[AnnotationIPPools]
	if !ok {
		return nil, nil
	}
	var list []struct {
		Interface string `json:"interface"`
		PoolNames
	}
	if err := strictJSON(v, &list); err != nil {
		return nil, fmt.Errorf("annotation %s: want a JSON list like [{\"interface\":\"net1\",\"ipv4\":[\"pool\"]}]: %v", AnnotationIPPools, err)
	}
	out := make(map[string]PoolNames, len(list))
	for i, e := range list {
		if e.Interface == "" {
			return nil, fmt.Errorf("annotation %s entry %d: \"interface\" is empty: name the pod interface, e.g. \"net1\"", AnnotationIPPools, i)
		}
		if _, dup := out[e.Interface]; dup {
			return nil, fmt.Errorf("annotation %s entry %d: interface %s is listed twice: merge the entries", AnnotationIPPools, i, e.Interface)
		}
		if err := checkNames(AnnotationIPPools, i, e.IPv4, e.IPv6); err != nil {
			return nil, err
		}
		out[e.Interface] = e.PoolNames
	}
	return out, nil
}

// ParseSubnets reads the subnet and subnets annotations; nil when both are absent.
func ParseSubnets(annotations map[string]string) (InterfaceSubnets, error) {
	single, hasSingle := annotations[AnnotationSubnet]
	multi, hasMulti := annotations[AnnotationSubnets]
	if !hasSingle && !hasMulti {
		return nil, nil
	}
	out := InterfaceSubnets{}
	if hasSingle {
		var s SubnetNames
		if err := strictJSON(single, &s); err != nil {
			return nil, fmt.Errorf("annotation %s: want JSON like {\"ipv4\":[\"subnet-a\"],\"ipv6\":[\"subnet-b\"]}: %v", AnnotationSubnet, err)
		}
		if s.First(IPv4) == "" && s.First(IPv6) == "" {
			return nil, fmt.Errorf("annotation %s names no Subnet: give \"ipv4\" and/or \"ipv6\"", AnnotationSubnet)
		}
		if err := checkSubnetNames(AnnotationSubnet, 0, s); err != nil {
			return nil, err
		}
		out[""] = s
	}
	if hasMulti {
		var list []struct {
			Interface string `json:"interface"`
			SubnetNames
		}
		if err := strictJSON(multi, &list); err != nil {
			return nil, fmt.Errorf("annotation %s: want JSON like [{\"interface\":\"net1\",\"ipv4\":[\"subnet-a\"]}]: %v", AnnotationSubnets, err)
		}
		for i, e := range list {
			switch {
			case e.Interface == "":
				return nil, fmt.Errorf("annotation %s entry %d: \"interface\" is empty: name the pod interface, e.g. \"net1\"", AnnotationSubnets, i)
			case e.First(IPv4) == "" && e.First(IPv6) == "":
				return nil, fmt.Errorf("annotation %s entry %d (%s) names no Subnet: give \"ipv4\" and/or \"ipv6\"", AnnotationSubnets, i, e.Interface)
			}
			if _, dup := out[e.Interface]; dup {
				return nil, fmt.Errorf("annotation %s: interface %s is listed twice: merge the entries", AnnotationSubnets, e.Interface)
			}
			if err := checkSubnetNames(AnnotationSubnets, i, e.SubnetNames); err != nil {
				return nil, err
			}
			out[e.Interface] = e.SubnetNames
		}
	}
	return out, nil
}

// ParseIPNumber reads the ippool-ip-number annotation against the workload's replicas and
// returns the application pool's size, never more than MaxAppPoolIPNumber.
func ParseIPNumber(annotations map[string]string, replicas int32) (int, error) {
	v := strings.TrimSpace(annotations[AnnotationIPNumber])
	if v == "" {
		if int(replicas) > MaxAppPoolIPNumber {
			return 0, fmt.Errorf("spec.replicas %d needs more addresses than an application pool may hold (%d); use a manually created IPPool", replicas, MaxAppPoolIPNumber)
		}
		return int(replicas), nil
	}
	plus := strings.HasPrefix(v, "+")
	digits := strings.TrimPrefix(v, "+")
	n, err := strconv.ParseInt(digits, 10, 64)
	onlyDigits := len(digits) > 0 && strings.Trim(digits, "0123456789") == "" // ParseInt takes a sign too: "++2"
	if err != nil && onlyDigits {
		n = math.MaxInt64 // only digits, too many of them: a size, and far too big
	} else if err != nil || !onlyDigits {
		return 0, fmt.Errorf("annotation %s %q: want a number of addresses (\"5\") or extra addresses over the replicas (\"+2\")", AnnotationIPNumber, v)
	}
	total := n
	if plus {
		total = min(n, math.MaxInt64-int64(replicas)) + int64(replicas)
	}
	if total > MaxAppPoolIPNumber {
		return 0, fmt.Errorf("annotation %s %q asks for %d addresses, more than the limit of %d per application pool: lower it, or create an IPPool by hand for a pool this large",
			AnnotationIPNumber, v, total, MaxAppPoolIPNumber)
	}
	if plus {
		return int(total), nil
	}
	if n < int64(replicas) {
		return 0, fmt.Errorf("annotation %s %q is fewer addresses than the %d replicas: use \"+N\" or at least %d", AnnotationIPNumber, v, replicas, replicas)
	}
	return int(n), nil
}

// ParseReclaim reads the ippool-reclaim annotation (default true).
func ParseReclaim(annotations map[string]string) (bool, error) {
	v, ok := annotations[AnnotationReclaim]
	if !ok || v == "" {
		return true, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, fmt.Errorf("annotation %s %q: want \"true\" or \"false\"", AnnotationReclaim, v)
	}
	return b, nil
}

// ParseRoutes reads the routes annotation; nil when absent or empty.
func ParseRoutes(annotations map[string]string) ([]PodRoute, error) {
	v := annotations[AnnotationRoutes]
	if strings.TrimSpace(v) == "" {
		return nil, nil
	}
	var entries []struct {
		Dst       string `json:"dst"`
		Gw        string `json:"gw,omitempty"`
		Interface string `json:"interface,omitempty"`
	}
	if err := strictJSON(v, &entries); err != nil {
		return nil, fmt.Errorf("annotation %s: want a JSON list like [{\"dst\":\"10.0.0.0/8\",\"gw\":\"10.250.1.1\",\"interface\":\"net1\"}]: %v", AnnotationRoutes, err)
	}
	out := make([]PodRoute, 0, len(entries))
	for i, e := range entries {
		dst, err := netip.ParsePrefix(e.Dst)
		if err != nil {
			return nil, fmt.Errorf("annotation %s entry %d: dst %q is not a CIDR (e.g. 10.0.0.0/8)", AnnotationRoutes, i, e.Dst)
		}
		r := PodRoute{Dst: dst.Masked(), Interface: e.Interface}
		if e.Gw != "" {
			if r.Gw, err = netip.ParseAddr(e.Gw); err != nil {
				return nil, fmt.Errorf("annotation %s entry %d: gw %q is not an IP address", AnnotationRoutes, i, e.Gw)
			}
			if r.Gw.Is4() != r.Dst.Addr().Is4() {
				return nil, fmt.Errorf("annotation %s entry %d: gw %s and dst %s are of different families: give a gw of dst's family", AnnotationRoutes, i, e.Gw, e.Dst)
			}
		}
		out = append(out, r)
	}
	return out, nil
}

// NamespaceAnnotations is what a namespace's annotations ask of ipamd.
// +kubebuilder:object:generate=false
type NamespaceAnnotations struct {
	// DefaultPools are the pools for the namespace's pods that name none themselves.
	DefaultPools PoolNames
}

// ParseNamespaceAnnotations reads the namespace's default pool annotations.
func ParseNamespaceAnnotations(annotations map[string]string) (NamespaceAnnotations, error) {
	var a NamespaceAnnotations
	var err error
	if a.DefaultPools.IPv4, err = nameList(annotations, AnnotationNSDefaultIPv4); err != nil {
		return NamespaceAnnotations{}, err
	}
	if a.DefaultPools.IPv6, err = nameList(annotations, AnnotationNSDefaultIPv6); err != nil {
		return NamespaceAnnotations{}, err
	}
	return a, nil
}

// nameList accepts a JSON list of names or a comma-separated list.
func nameList(annotations map[string]string, key string) ([]string, error) {
	v := strings.TrimSpace(annotations[key])
	if v == "" {
		return nil, nil
	}
	var names []string
	if strings.HasPrefix(v, "[") {
		if err := strictJSON(v, &names); err != nil {
			return nil, fmt.Errorf("annotation %s: want a JSON list of pool names like [\"pool-a\",\"pool-b\"] or \"pool-a,pool-b\": %v", key, err)
		}
	} else {
		for _, n := range strings.Split(v, ",") {
			names = append(names, strings.TrimSpace(n))
		}
	}
	for i, n := range names {
		if strings.TrimSpace(n) == "" {
			return nil, fmt.Errorf("annotation %s: entry %d is empty: remove it or name a pool", key, i)
		}
		if err := objectName(n); err != nil {
			return nil, fmt.Errorf("annotation %s: entry %d: %v", key, i, err)
		}
	}
	return names, nil
}

func checkNames(key string, entry int, lists ...[]string) error {
	for _, l := range lists {
		for _, n := range l {
			if strings.TrimSpace(n) == "" {
				return fmt.Errorf("annotation %s entry %d: a pool name is empty: remove it or name a pool", key, entry)
			}
			if err := objectName(n); err != nil {
				return fmt.Errorf("annotation %s entry %d: %v", key, entry, err)
			}
		}
	}
	return nil
}

// objectName refuses what cannot name a pool or a Subnet object ("pool-a x", "Pool_A"):
// such a name would only ever select nothing, so it is a typo or trailing text.
func objectName(n string) error {
	if errs := validation.IsDNS1123Subdomain(n); len(errs) > 0 {
		return fmt.Errorf("%q cannot name an object (%s)", n, errs[0])
	}
	return nil
}

func checkSubnetNames(key string, entry int, s SubnetNames) error {
	for _, n := range append(slices.Clone(s.IPv4), s.IPv6...) {
		if strings.TrimSpace(n) == "" {
			return fmt.Errorf("annotation %s entry %d: a Subnet name is empty: remove it or name a Subnet", key, entry)
		}
		if err := objectName(n); err != nil {
			return fmt.Errorf("annotation %s entry %d: %v", key, entry, err)
		}
	}
	return nil
}

// strictJSON decodes exactly one JSON value, refusing unknown fields and anything after it.
func strictJSON(v string, into any) error {
	dec := json.NewDecoder(strings.NewReader(v))
	dec.DisallowUnknownFields()
	if err := dec.Decode(into); err != nil {
		return err
	}
	if rest := strings.TrimSpace(v[dec.InputOffset():]); rest != "" {
		if len(rest) > 40 {
			rest = rest[:40] + "..."
		}
		return fmt.Errorf("unexpected text after the JSON value: %q", rest)
	}
	return nil
}
