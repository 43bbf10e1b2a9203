package v1

import (
	"strings"
	"testing"
)

// annotationParsers calls every annotation parser with value under its own key, and
// returns the error; names lists what a refusal may name (the key, and for the pool size
// the workload's replicas).
var annotationParsers = []struct {
	key   string
	names []string
	parse func(value string, replicas int32) error
}{
	{AnnotationIPPool, nil, func(v string, _ int32) error {
		p, err := ParseIPPool(map[string]string{AnnotationIPPool: v})
		if err == nil && (p == nil || p.Empty()) {
			return errAccepted("an empty pool list")
		}
		return err
	}},
	{AnnotationIPPools, nil, func(v string, _ int32) error {
		_, err := ParseIPPools(map[string]string{AnnotationIPPools: v})
		return err
	}},
	{AnnotationSubnet, nil, func(v string, _ int32) error {
		_, err := ParseSubnets(map[string]string{AnnotationSubnet: v})
		return err
	}},
	{AnnotationSubnets, nil, func(v string, _ int32) error {
		_, err := ParseSubnets(map[string]string{AnnotationSubnets: v})
		return err
	}},
	{AnnotationIPNumber, []string{"spec.replicas"}, func(v string, replicas int32) error {
		n, err := ParseIPNumber(map[string]string{AnnotationIPNumber: v}, replicas)
		if err == nil && (n < 0 || n > MaxAppPoolIPNumber || n < int(replicas)) {
			return errAccepted("a pool size outside [replicas, MaxAppPoolIPNumber]")
		}
		return err
	}},
	{AnnotationReclaim, nil, func(v string, _ int32) error {
		_, err := ParseReclaim(map[string]string{AnnotationReclaim: v})
		return err
	}},
	{AnnotationRoutes, nil, func(v string, _ int32) error {
		routes, err := ParseRoutes(map[string]string{AnnotationRoutes: v})
		for _, r := range routes {
			if !r.Dst.IsValid() || r.Dst != r.Dst.Masked() || (r.Gw.IsValid() && r.Gw.Is4() != r.Dst.Addr().Is4()) {
				return errAccepted("an unmasked route or one whose gw is of another family")
			}
		}
		return err
	}},
	{AnnotationNSDefaultIPv4, nil, func(v string, _ int32) error {
		_, err := ParseNamespaceAnnotations(map[string]string{AnnotationNSDefaultIPv4: v})
		return err
	}},
	{AnnotationNSDefaultIPv6, nil, func(v string, _ int32) error {
		_, err := ParseNamespaceAnnotations(map[string]string{AnnotationNSDefaultIPv6: v})
		return err
	}},
	{"pod annotations", nil, nil}, // ParsePodAnnotations, with the value under every pod key
}

type errAccepted string

func (e errAccepted) Error() string { return "accepted " + string(e) }

// FuzzAnnotations: no annotation value panics its parser, every refusal names the
// annotation (or the field it is checked against), and nothing impossible is accepted.
func FuzzAnnotations(f *testing.F) {
	for _, seed := range []string{
		`{"ipv4":["a","b"],"ipv6":["c"]}`, `[{"interface":"net1","ipv4":["a"]}]`, `{"ipv4":["s4"]}`,
		`[{"interface":"net1","ipv4":["s"],"ipv6":["s6"]}]`, "+2", "7", "true", "a, b", `["a"]`,
		`[{"dst":"10.0.0.0/8","gw":"10.250.1.1","interface":"net1"},{"dst":"fd00::/8"}]`,
		`{"ipv4":["a"]} x`, "++2", "", " ", `[{"dst":"10.1.2.3/8"}]`, "99999999999999999999999",
	} {
		for i := range annotationParsers {
			f.Add(seed, uint8(i), int32(3))
		}
	}
	f.Fuzz(func(t *testing.T, value string, which uint8, replicas int32) {
		p := annotationParsers[int(which)%len(annotationParsers)]
		if replicas < 0 {
			replicas = -replicas % (MaxAppPoolIPNumber + 2) // the API keeps replicas >= 0
		}
		if p.parse == nil {
			all := map[string]string{}
			for _, k := range []string{AnnotationIPPool, AnnotationIPPools, AnnotationSubnet, AnnotationSubnets, AnnotationRoutes} {
				all[k] = value
			}
			if _, err := ParsePodAnnotations(all); err != nil && !strings.Contains(err.Error(), AnnotationPrefix) {
				t.Fatalf("pod annotations %q: error %q names no annotation", value, err)
			}
			return
		}
		err := p.parse(value, replicas)
		if _, bad := err.(errAccepted); bad {
			t.Fatalf("%s=%q (replicas %d): %v", p.key, value, replicas, err)
		}
		if err == nil {
			return
		}
		for _, name := range append([]string{p.key}, p.names...) {
			if strings.Contains(err.Error(), name) {
				return
			}
		}
		t.Fatalf("%s=%q (replicas %d): error %q names neither the annotation nor %v", p.key, value, replicas, err, p.names)
	})
}

// A refusal that is about the workload, not the annotation, names the workload's field.
func TestIPNumberTooManyReplicasNamesTheField(t *testing.T) {
	_, err := ParseIPNumber(map[string]string{}, MaxAppPoolIPNumber+1)
	if err == nil || !strings.Contains(err.Error(), "spec.replicas") {
		t.Fatalf("error %v does not name spec.replicas", err)
	}
}
