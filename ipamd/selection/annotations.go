// Package selection decides which pools an attachment may use, in the documented order:
// pod annotation > pod subnet annotation > namespace default > the network's own pools >
// cluster default pools. It is pure: callers pass the pod, namespace, node and pools.
package selection

import (
	"encoding/json"
	"fmt"
	"strings"
)

// Annotation keys users set.
const (
	Prefix = "ipam.underpool.io/"
	// AnnotationIPPool names pools for the pod's interfaces: {"ipv4":[...],"ipv6":[...]}.
	AnnotationIPPool = Prefix + "ippool"
	// AnnotationIPPools names pools per interface: [{"interface":"net1","ipv4":[...]}, ...].
	AnnotationIPPools = Prefix + "ippools"
	// Namespace annotations: JSON lists (or comma-separated names) of default pools.
	AnnotationNSDefaultV4 = Prefix + "default-ipv4-ippool"
	AnnotationNSDefaultV6 = Prefix + "default-ipv6-ippool"
)

// Families is an ordered pool list per address family; earlier pools are preferred.
type Families struct {
	IPv4 []string `json:"ipv4,omitempty"`
	IPv6 []string `json:"ipv6,omitempty"`
}

// Empty reports whether no pool is named.
func (f Families) Empty() bool { return len(f.IPv4) == 0 && len(f.IPv6) == 0 }

type interfacePools struct {
	Interface string   `json:"interface"`
	IPv4      []string `json:"ipv4,omitempty"`
	IPv6      []string `json:"ipv6,omitempty"`
}

// podPools reads the pod's pool annotations for ifName, and which annotation named them.
// ippools (per interface) wins over ippool (all interfaces); an interface ippools does not
// list falls back to ippool.
func podPools(annotations map[string]string, ifName string) (Families, string, error) {
	if v, ok := annotations[AnnotationIPPools]; ok {
		var list []interfacePools
		if err := strictUnmarshal(v, &list); err != nil {
			return Families{}, "", fmt.Errorf("annotation %s: want a JSON list like [{\"interface\":\"net1\",\"ipv4\":[\"pool\"]}]: %v", AnnotationIPPools, err)
		}
		seen := map[string]bool{}
		for i, e := range list {
			if e.Interface == "" {
				return Families{}, "", fmt.Errorf("annotation %s entry %d: \"interface\" is empty", AnnotationIPPools, i)
			}
			if seen[e.Interface] {
				return Families{}, "", fmt.Errorf("annotation %s entry %d: interface %s is listed twice", AnnotationIPPools, i, e.Interface)
			}
			seen[e.Interface] = true
			if err := checkNames(AnnotationIPPools, i, e.IPv4, e.IPv6); err != nil {
				return Families{}, "", err
			}
		}
		for _, e := range list {
			if e.Interface == ifName {
				return Families{IPv4: e.IPv4, IPv6: e.IPv6}, AnnotationIPPools, nil
			}
		}
	}
	if v, ok := annotations[AnnotationIPPool]; ok {
		var f Families
		if err := strictUnmarshal(v, &f); err != nil {
			return Families{}, "", fmt.Errorf("annotation %s: want JSON like {\"ipv4\":[\"pool-a\",\"pool-b\"],\"ipv6\":[\"pool-c\"]}: %v", AnnotationIPPool, err)
		}
		if err := checkNames(AnnotationIPPool, 0, f.IPv4, f.IPv6); err != nil {
			return Families{}, "", err
		}
		if f.Empty() {
			return Families{}, "", fmt.Errorf("annotation %s names no pool: give \"ipv4\" and/or \"ipv6\" lists", AnnotationIPPool)
		}
		return f, AnnotationIPPool, nil
	}
	return Families{}, "", nil
}

// namespaceDefaults reads the namespace's default pool annotations.
func namespaceDefaults(annotations map[string]string) (Families, error) {
	var f Families
	var err error
	if f.IPv4, err = nameList(annotations, AnnotationNSDefaultV4); err != nil {
		return Families{}, err
	}
	if f.IPv6, err = nameList(annotations, AnnotationNSDefaultV6); err != nil {
		return Families{}, err
	}
	return f, nil
}

// nameList accepts a JSON list of names or a comma-separated list.
func nameList(annotations map[string]string, key string) ([]string, error) {
	v, ok := annotations[key]
	if !ok || strings.TrimSpace(v) == "" {
		return nil, nil
	}
	var names []string
	if strings.HasPrefix(strings.TrimSpace(v), "[") {
		if err := json.Unmarshal([]byte(v), &names); err != nil {
			return nil, fmt.Errorf("annotation %s: want a JSON list of pool names or \"a,b\": %v", key, err)
		}
	} else {
		for _, n := range strings.Split(v, ",") {
			names = append(names, strings.TrimSpace(n))
		}
	}
	for i, n := range names {
		if n == "" {
			return nil, fmt.Errorf("annotation %s: entry %d is empty", key, i)
		}
	}
	return names, nil
}

func checkNames(key string, entry int, lists ...[]string) error {
	for _, l := range lists {
		for _, n := range l {
			if strings.TrimSpace(n) == "" {
				return fmt.Errorf("annotation %s entry %d: a pool name is empty", key, entry)
			}
		}
	}
	return nil
}

func strictUnmarshal(v string, into any) error {
	dec := json.NewDecoder(strings.NewReader(v))
	dec.DisallowUnknownFields()
	return dec.Decode(into)
}
