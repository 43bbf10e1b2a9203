// Package apppool is the shared vocabulary of fixed-IP application pools: the annotations
// a Deployment or StatefulSet carries in its pod template, the name of the pool carved for
// it from a Subnet, and how a pod finds its workload. The controller creates and sizes the
// pools; ipamd's selection sends the workload's pods to them.
package apppool

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/underpool/underpool/ipamd/api/v1"
)

// Annotations on a workload's pod template (and so on its pods).
const (
	// AnnotationSubnet names the Subnet per family: {"ipv4":["subnet-a"],"ipv6":["subnet-b"]}.
	AnnotationSubnet = "ipam.underpool.io/subnet"
	// AnnotationSubnets names them per interface, for multi-NIC workloads:
	// [{"interface":"net1","ipv4":["subnet-a"]},{"interface":"net2","ipv4":["subnet-c"]}].
	AnnotationSubnets = "ipam.underpool.io/subnets"
	// AnnotationIPNumber sizes the pool: "N" addresses, or "+N" more than the replicas.
	AnnotationIPNumber = "ipam.underpool.io/ippool-ip-number"
	// AnnotationReclaim: "true" (default) deletes the pool with the workload, "false" keeps it.
	AnnotationReclaim = "ipam.underpool.io/ippool-reclaim"
)

// Labels on an application pool.
const (
	LabelOwnerHash = "underpool.io/app-owner"
	LabelSubnet    = "underpool.io/subnet"
	LabelReclaim   = "underpool.io/reclaim"
	// AnnotationOwner holds the full "kind/namespace/name" (labels are too short for it).
	AnnotationOwner = "underpool.io/app-owner"
)

// Workload names a Deployment or StatefulSet.
type Workload struct{ Kind, Namespace, Name string }

func (w Workload) String() string { return w.Kind + "/" + w.Namespace + "/" + w.Name }

// Hash is a label-safe digest of the workload's identity.
func (w Workload) Hash() string {
	sum := sha256.Sum256([]byte(w.String()))
	return hex.EncodeToString(sum[:])[:32]
}

// PoolName is the name of the workload's pool for a family: readable when it fits, and
// always unique through the hash suffix.
func (w Workload) PoolName(family v1.IPFamily) string { return w.PoolNameFor("", family) }

// PoolNameFor is PoolName for one interface of a multi-NIC workload ("" = every interface).
func (w Workload) PoolNameFor(ifName string, family v1.IPFamily) string {
	suffix := "v4"
	if family == v1.IPv6 {
		suffix = "v6"
	}
	if ifName != "" {
		suffix = ifName + "-" + suffix
	}
	base := fmt.Sprintf("auto-%s-%s-%s", w.Namespace, strings.ToLower(w.Kind), w.Name)
	if len(base) > 190 {
		base = base[:190]
	}
	return base + "-" + w.Hash()[:8] + "-" + suffix
}

// WorkloadOf finds the Deployment or StatefulSet a pod belongs to. A Deployment's pods are
// owned by a ReplicaSet named <deployment>-<pod-template-hash>, so no lookup is needed.
func WorkloadOf(pod *corev1.Pod) (Workload, bool) {
	ref := metav1.GetControllerOf(pod)
	if ref == nil {
		return Workload{}, false
	}
	switch ref.Kind {
	case "StatefulSet":
		return Workload{"StatefulSet", pod.Namespace, ref.Name}, true
	case "ReplicaSet":
		hash := pod.Labels["pod-template-hash"]
		if name, ok := strings.CutSuffix(ref.Name, "-"+hash); ok && hash != "" {
			return Workload{"Deployment", pod.Namespace, name}, true
		}
	}
	return Workload{}, false
}

// Subnets is the parsed subnet annotation.
type Subnets struct {
	IPv4 []string `json:"ipv4,omitempty"`
	IPv6 []string `json:"ipv6,omitempty"`
}

// First returns the Subnet used for a family ("" when none): the first listed.
func (s Subnets) First(family v1.IPFamily) string {
	l := s.IPv4
	if family == v1.IPv6 {
		l = s.IPv6
	}
	if len(l) == 0 {
		return ""
	}
	return l[0]
}

// InterfaceSubnets maps an interface name to its Subnets; the key "" is the subnet
// annotation's, for every interface the subnets annotation does not list.
type InterfaceSubnets map[string]Subnets

// For returns the Subnets an interface uses, and false when the workload names none.
func (m InterfaceSubnets) For(ifName string) (Subnets, bool) {
	if s, ok := m[ifName]; ok {
		return s, true
	}
	s, ok := m[""]
	return s, ok
}

// ParseAll reads both annotations; ok is false when neither is present.
func ParseAll(annotations map[string]string) (InterfaceSubnets, bool, error) {
	out := InterfaceSubnets{}
	single, hasSingle, err := ParseSubnets(annotations)
	if err != nil {
		return nil, true, err
	}
	if hasSingle {
		out[""] = single
	}
	v, hasMulti := annotations[AnnotationSubnets]
	if hasMulti {
		var list []struct {
			Interface string `json:"interface"`
			Subnets
		}
		dec := json.NewDecoder(strings.NewReader(v))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&list); err != nil {
			return nil, true, fmt.Errorf("annotation %s: want JSON like [{\"interface\":\"net1\",\"ipv4\":[\"subnet-a\"]}]: %v", AnnotationSubnets, err)
		}
		for i, e := range list {
			switch {
			case e.Interface == "":
				return nil, true, fmt.Errorf("annotation %s entry %d: \"interface\" is empty", AnnotationSubnets, i)
			case e.First(v1.IPv4) == "" && e.First(v1.IPv6) == "":
				return nil, true, fmt.Errorf("annotation %s entry %d (%s) names no Subnet", AnnotationSubnets, i, e.Interface)
			}
			if _, dup := out[e.Interface]; dup {
				return nil, true, fmt.Errorf("annotation %s: interface %s is listed twice", AnnotationSubnets, e.Interface)
			}
			out[e.Interface] = e.Subnets
		}
	}
	return out, hasSingle || hasMulti, nil
}

// ParseSubnets reads the subnet annotation; ok is false when it is absent.
func ParseSubnets(annotations map[string]string) (Subnets, bool, error) {
	v, present := annotations[AnnotationSubnet]
	if !present {
		return Subnets{}, false, nil
	}
	var s Subnets
	dec := json.NewDecoder(strings.NewReader(v))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		return Subnets{}, true, fmt.Errorf("annotation %s: want JSON like {\"ipv4\":[\"subnet-a\"],\"ipv6\":[\"subnet-b\"]}: %v", AnnotationSubnet, err)
	}
	if s.First(v1.IPv4) == "" && s.First(v1.IPv6) == "" {
		return Subnets{}, true, fmt.Errorf("annotation %s names no Subnet: give \"ipv4\" and/or \"ipv6\"", AnnotationSubnet)
	}
	return s, true, nil
}

// MaxIPNumber bounds an application pool's size. A pool is carved for one workload's
// pods; a bigger value is a typo or an attack (10^12 on an IPv6 Subnet), and refusing it
// keeps the controller's single worker from spending itself on one workload.
const MaxIPNumber = 65536

// Size reads the ip-number annotation against the replicas: "N" or "+N"; absent means
// exactly the replicas. The result never exceeds MaxIPNumber.
func Size(annotations map[string]string, replicas int32) (int, error) {
	v := strings.TrimSpace(annotations[AnnotationIPNumber])
	if v == "" {
		if int(replicas) > MaxIPNumber {
			return 0, fmt.Errorf("%d replicas need more addresses than an application pool may hold (%d); use a manually created IPPool", replicas, MaxIPNumber)
		}
		return int(replicas), nil
	}
	plus := strings.HasPrefix(v, "+")
	digits := strings.TrimPrefix(v, "+")
	n, err := strconv.ParseInt(digits, 10, 64)
	if err != nil && len(digits) > 0 && strings.Trim(digits, "0123456789") == "" {
		n = math.MaxInt64 // only digits, too many of them: a size, and far too big
	} else if err != nil || n < 0 {
		return 0, fmt.Errorf("annotation %s %q: want a number of addresses (\"5\") or extra addresses over the replicas (\"+2\")", AnnotationIPNumber, v)
	}
	total := n
	if plus {
		total = min(n, math.MaxInt64-int64(replicas)) + int64(replicas)
	}
	if total > MaxIPNumber {
		return 0, fmt.Errorf("annotation %s %q asks for %d addresses, more than the limit of %d per application pool: lower it, or create an IPPool by hand for a pool this large",
			AnnotationIPNumber, v, total, MaxIPNumber)
	}
	if plus {
		return int(total), nil
	}
	if n < int64(replicas) {
		return 0, fmt.Errorf("annotation %s %q is fewer addresses than the %d replicas: use \"+N\" or at least %d", AnnotationIPNumber, v, replicas, replicas)
	}
	return int(n), nil
}

// Reclaim reads the reclaim annotation (default true).
func Reclaim(annotations map[string]string) (bool, error) {
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
