// Package selection decides which pools an attachment may use, in the documented order:
// pod annotation > pod subnet annotation > namespace default > the network's own pools >
// cluster default pools. It is pure: callers pass the pod, namespace, node and pools, and
// the annotations already parsed (ipamd/api/v1 owns their keys and parsers).
package selection

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/core/apppool"
)

// Families is an ordered pool list per address family; earlier pools are preferred.
type Families = v1.PoolNames

// Input is what selection looks at for one attachment.
type Input struct {
	Pod *corev1.Pod // nil when the pod is unknown to the API
	// PodAnnotations are the pod's annotations, parsed once for the whole request.
	PodAnnotations v1.PodAnnotations
	Namespace      *corev1.Namespace
	// NamespaceAnnotations are the namespace's, parsed once; NamespaceAnnotationsErr is
	// why they did not parse, reported only to requests that fall back to the namespace
	// default (one bad namespace annotation must not fail pods that name their pools).
	NamespaceAnnotations    v1.NamespaceAnnotations
	NamespaceAnnotationsErr error
	Node                    *corev1.Node
	IfName                  string
	Network                 string   // the CNI network name (the NAD's config name)
	NAD                     Families // the network config's own pools
	Pools                   []v1.IPPool
	// WorkloadAbove is the controller reference of the ReplicaSet or Job that controls the
	// pod (apppool.Intermediate), read by the caller only for pods that ask for an
	// application pool: a CronJob's pods name only their Job. Nil when that object has no
	// controller, or the pod needs no read.
	WorkloadAbove *metav1.OwnerReference
}

// Source names where the candidate pools came from.
type Source string

const (
	SourcePodAnnotation  Source = "pod annotation"
	SourceAppPool        Source = "pod subnet annotation (application pool)"
	SourceNamespace      Source = "namespace default"
	SourceNetwork        Source = "network config"
	SourceClusterDefault Source = "cluster default pools"
)

// Candidates returns the ordered pool names per family from the first source that names
// any, in priority order.
func Candidates(in *Input) (Families, Source, error) {
	if in.Pod != nil {
		if f, key := in.PodAnnotations.PoolsFor(in.IfName); !f.Empty() {
			return f, SourcePodAnnotation, checkFamilies(f, in.Pools,
				fmt.Sprintf("annotation %s \"ipv4\" list", key), fmt.Sprintf("annotation %s \"ipv6\" list", key))
		}
		if f, wanted, err := appPoolCandidates(in); wanted {
			return f, SourceAppPool, err
		}
	}
	if in.Namespace != nil {
		if in.NamespaceAnnotationsErr != nil {
			return Families{}, "", fmt.Errorf("namespace %s: %w", in.Namespace.Name, in.NamespaceAnnotationsErr)
		}
		if f := in.NamespaceAnnotations.DefaultPools; !f.Empty() {
			return f, SourceNamespace, checkFamilies(f, in.Pools,
				fmt.Sprintf("namespace %s annotation %s", in.Namespace.Name, v1.AnnotationNSDefaultIPv4),
				fmt.Sprintf("namespace %s annotation %s", in.Namespace.Name, v1.AnnotationNSDefaultIPv6))
		}
	}
	if !in.NAD.Empty() {
		return in.NAD, SourceNetwork, checkFamilies(in.NAD, in.Pools,
			fmt.Sprintf("network %q ipam.ipv4Pools", in.Network), fmt.Sprintf("network %q ipam.ipv6Pools", in.Network))
	}
	var f Families
	for _, p := range in.Pools {
		if !p.Spec.Default {
			continue
		}
		if isIPv6(p.Spec.Subnet) {
			f.IPv6 = append(f.IPv6, p.Name)
		} else {
			f.IPv4 = append(f.IPv4, p.Name)
		}
	}
	sort.Strings(f.IPv4)
	sort.Strings(f.IPv6)
	if f.Empty() {
		return f, "", fmt.Errorf("no pool for interface %s: no %s/%s annotation on the pod, no namespace default (%s), no ipam.ipv4Pools/ipv6Pools in the network config and no IPPool with spec.default: true",
			in.IfName, v1.AnnotationIPPool, v1.AnnotationIPPools, v1.AnnotationNSDefaultIPv4)
	}
	return f, SourceClusterDefault, nil
}

// appPoolCandidates names the application pools of the pod's workload when its subnet or
// subnets annotation covers the interface (wanted).
func appPoolCandidates(in *Input) (f Families, wanted bool, err error) {
	all := in.PodAnnotations.Subnets
	subnets, forThis := all.For(in.IfName)
	if !forThis {
		return Families{}, false, nil
	}
	w, ok := apppool.WorkloadOf(in.Pod, in.WorkloadAbove)
	if !ok {
		return Families{}, true, fmt.Errorf("annotation %s: the pod has no controller (Deployment, StatefulSet, DaemonSet, ReplicaSet, Job, CronJob or another with a scale subresource) "+
			"whose application pool it would use: name pools with %s instead", v1.AnnotationSubnet, v1.AnnotationIPPool)
	}
	ifKey := in.IfName
	if _, own := all[in.IfName]; !own {
		ifKey = "" // the single subnet annotation's pool serves every interface
	}
	if subnets.First(v1.IPv4) != "" {
		f.IPv4 = []string{w.PoolNameFor(ifKey, v1.IPv4)}
	}
	if subnets.First(v1.IPv6) != "" {
		f.IPv6 = []string{w.PoolNameFor(ifKey, v1.IPv6)}
	}
	return f, true, checkFamilies(f, in.Pools,
		fmt.Sprintf("annotation %s \"ipv4\" Subnet", v1.AnnotationSubnet), fmt.Sprintf("annotation %s \"ipv6\" Subnet", v1.AnnotationSubnet))
}

// checkFamilies refuses a pool named in the list of the other family: an IPv4 pool in an
// IPv6 list would give one interface two IPv4 addresses. where4 and where6 name the field
// each list came from. Pools that do not exist or do not parse are left to allocation,
// which reports them per pool.
func checkFamilies(f Families, pools []v1.IPPool, where4, where6 string) error {
	byName := make(map[string]*v1.IPPool, len(pools))
	for i := range pools {
		byName[pools[i].Name] = &pools[i]
	}
	for _, l := range []struct {
		names        []string
		where, other string
		want6        bool
	}{{f.IPv4, where4, where6, false}, {f.IPv6, where6, where4, true}} {
		for _, name := range l.names {
			p := byName[name]
			if p == nil {
				continue
			}
			prefix, err := netip.ParsePrefix(strings.TrimSpace(p.Spec.Subnet))
			if err != nil || prefix.Addr().Is6() == l.want6 {
				continue
			}
			have, want := "IPv6", "IPv4" // an IPv6 pool in an IPv4 list
			if l.want6 {
				have, want = want, have
			}
			return fmt.Errorf("%s names IPPool %s, whose subnet %s is %s, not %s: move it to the %s",
				l.where, name, prefix, have, want, l.other)
		}
	}
	return nil
}

// Eligible says whether the pool's affinities allow this attachment, and if not, why.
func Eligible(pool *v1.IPPool, in *Input) (bool, string) {
	s := &pool.Spec
	if s.NodeAffinity != nil {
		if in.Node == nil {
			return false, "nodeAffinity set but this node's labels are unknown"
		}
		if ok, why := matches(pool, s.NodeAffinity, in.Node.Labels, "nodeAffinity", "node "+in.Node.Name); !ok {
			return false, why
		}
	}
	if s.NamespaceAffinity != nil {
		var l map[string]string
		name := "?"
		if in.Namespace != nil {
			l, name = in.Namespace.Labels, in.Namespace.Name
		}
		if ok, why := matches(pool, s.NamespaceAffinity, l, "namespaceAffinity", "namespace "+name); !ok {
			return false, why
		}
	}
	if s.PodAffinity != nil {
		var l map[string]string
		if in.Pod != nil {
			l = in.Pod.Labels
		}
		if ok, why := matches(pool, s.PodAffinity, l, "podAffinity", "the pod's labels"); !ok {
			return false, why
		}
	}
	if len(s.MultusNames) > 0 && !networkAllowed(s.MultusNames, in) {
		return false, fmt.Sprintf("multusNames %v does not include network %q", s.MultusNames, in.Network)
	}
	return true, ""
}

func matches(pool *v1.IPPool, sel *metav1.LabelSelector, l map[string]string, field, what string) (bool, string) {
	selector, err := selectorFor(pool, field, sel)
	if err != nil {
		return false, fmt.Sprintf("%s is invalid: %v", field, err)
	}
	if !selector.Matches(labels.Set(l)) {
		return false, fmt.Sprintf("%s %q does not match %s", field, selector.String(), what)
	}
	return true, ""
}

func networkAllowed(names []string, in *Input) bool {
	for _, n := range names {
		if n == in.Network || (in.Namespace != nil && n == in.Namespace.Name+"/"+in.Network) {
			return true
		}
	}
	return false
}

func isIPv6(cidr string) bool {
	for _, c := range cidr {
		if c == ':' {
			return true
		}
	}
	return false
}
