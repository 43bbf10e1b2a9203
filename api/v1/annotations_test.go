package v1

import (
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"
)

// Each key gets a table: what parses (and to what), and what is refused with an error
// naming the annotation.
type annotationCase struct {
	name  string
	value string
	want  any    // parsed value when err == ""
	err   string // substring of the error; the annotation key is checked besides
}

func runAnnotationCases(t *testing.T, key string, cases []annotationCase, parse func(map[string]string) (any, error)) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := parse(map[string]string{key: c.value})
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), key) || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("%s=%q: error %v, want one naming %s and saying %q", key, c.value, err, key, c.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("%s=%q: %v", key, c.value, err)
			}
			if !reflect.DeepEqual(got, c.want) {
				t.Fatalf("%s=%q: got %#v, want %#v", key, c.value, got, c.want)
			}
		})
	}
}

func TestAnnotationIPPool(t *testing.T) {
	runAnnotationCases(t, AnnotationIPPool, []annotationCase{
		{"both families", `{"ipv4":["a","b"],"ipv6":["c"]}`, &PoolNames{IPv4: []string{"a", "b"}, IPv6: []string{"c"}}, ""},
		{"one family", `{"ipv6":["c"]}`, &PoolNames{IPv6: []string{"c"}}, ""},
		{"not a list", `{"ipv4":"a"}`, nil, "want JSON like"},
		{"names no pool", `{}`, nil, "names no pool"},
		{"unknown field", `{"ipv4":["a"],"typo":1}`, nil, "unknown field"},
		{"trailing garbage", `{"ipv4":["a"]} x`, nil, "after the JSON value"},
		{"empty name", `{"ipv4":[" "]}`, nil, "pool name is empty"},
		{"trailing text in a name", `{"ipv4":["a x"]}`, nil, `"a x" cannot name an object`},
		{"not an object name", `{"ipv6":["Pool_A"]}`, nil, `"Pool_A" cannot name an object`},
	}, func(a map[string]string) (any, error) { return ParseIPPool(a) })
}

func TestAnnotationIPPools(t *testing.T) {
	runAnnotationCases(t, AnnotationIPPools, []annotationCase{
		{"per interface", `[{"interface":"net1","ipv4":["a"]},{"interface":"net2","ipv6":["c"]}]`,
			map[string]PoolNames{"net1": {IPv4: []string{"a"}}, "net2": {IPv6: []string{"c"}}}, ""},
		{"interface missing", `[{"ipv4":["a"]}]`, nil, `"interface" is empty`},
		{"interface twice", `[{"interface":"net1","ipv4":["a"]},{"interface":"net1"}]`, nil, "listed twice"},
		{"not a list", `{"interface":"net1"}`, nil, "want a JSON list"},
		{"unknown field", `[{"interface":"net1","ipv4":["a"],"pool":"x"}]`, nil, "unknown field"},
		{"trailing garbage", `[{"interface":"net1","ipv4":["a"]}]]`, nil, "after the JSON value"},
		{"empty name", `[{"interface":"net1","ipv4":[""]}]`, nil, "entry 0: a pool name is empty"},
		{"trailing text in a name", `[{"interface":"net1","ipv4":["a"]},{"interface":"net2","ipv4":["b;c"]}]`, nil, `entry 1: "b;c" cannot name an object`},
	}, func(a map[string]string) (any, error) { return ParseIPPools(a) })
}

func TestAnnotationSubnet(t *testing.T) {
	runAnnotationCases(t, AnnotationSubnet, []annotationCase{
		{"both families", `{"ipv4":["s4"],"ipv6":["s6"]}`, InterfaceSubnets{"": {IPv4: []string{"s4"}, IPv6: []string{"s6"}}}, ""},
		{"not a list", `{"ipv4":"s"}`, nil, "want JSON like"},
		{"names no subnet", `{"ipv4":[]}`, nil, "names no Subnet"},
		{"unknown field", `{"ipv4":["s"],"size":3}`, nil, "unknown field"},
		{"trailing garbage", `{"ipv4":["s"]}{}`, nil, "after the JSON value"},
		{"trailing whitespace is fine", "{\"ipv4\":[\"s\"]}\n ", InterfaceSubnets{"": {IPv4: []string{"s"}}}, ""},
		{"trailing text in a name", `{"ipv4":["s4 s5"]}`, nil, `"s4 s5" cannot name an object`},
		{"an empty later name", `{"ipv4":["s4",""]}`, nil, "a Subnet name is empty"},
	}, func(a map[string]string) (any, error) { return ParseSubnets(a) })
}

func TestAnnotationSubnets(t *testing.T) {
	runAnnotationCases(t, AnnotationSubnets, []annotationCase{
		{"per interface", `[{"interface":"net2","ipv4":["s2"],"ipv6":["s6"]}]`, InterfaceSubnets{"net2": {IPv4: []string{"s2"}, IPv6: []string{"s6"}}}, ""},
		{"interface missing", `[{"ipv4":["s"]}]`, nil, `"interface" is empty`},
		{"names no subnet", `[{"interface":"net1"}]`, nil, "names no Subnet"},
		{"interface twice", `[{"interface":"net1","ipv4":["a"]},{"interface":"net1","ipv4":["b"]}]`, nil, "listed twice"},
		{"truncated", `{`, nil, "want JSON like"},
		{"unknown field", `[{"interface":"net1","ipv4":["a"],"x":1}]`, nil, "unknown field"},
		{"trailing garbage", `[{"interface":"net1","ipv4":["a"]}] garbage`, nil, "after the JSON value"},
		{"a second value", `[{"interface":"net1","ipv4":["a"]}][]`, nil, "after the JSON value"},
		{"trailing text in a name", `[{"interface":"net1","ipv6":["s6\tx"]}]`, nil, "cannot name an object"},
	}, func(a map[string]string) (any, error) { return ParseSubnets(a) })
}

// The subnets annotation wins for the interfaces it lists; the subnet annotation serves
// the others.
func TestSubnetsFallBackToTheSubnetAnnotation(t *testing.T) {
	all, err := ParseSubnets(map[string]string{
		AnnotationSubnet:  `{"ipv4":["default-sub"]}`,
		AnnotationSubnets: `[{"interface":"net2","ipv4":["s2"],"ipv6":["s6"]}]`,
	})
	if err != nil {
		t.Fatal(err)
	}
	if s, ok := all.For("net2"); !ok || s.First(IPv4) != "s2" || s.First(IPv6) != "s6" {
		t.Fatalf("net2 = %+v", s)
	}
	if s, ok := all.For("net1"); !ok || s.First(IPv4) != "default-sub" || s.First(IPv6) != "" {
		t.Fatalf("net1 falls back to the subnet annotation: %+v", s)
	}
	if s, err := ParseSubnets(nil); s != nil || err != nil {
		t.Fatalf("absent: %v %v", s, err)
	}
}

func TestAnnotationIPNumber(t *testing.T) {
	const replicas = 3
	runAnnotationCases(t, AnnotationIPNumber, []annotationCase{
		{"absent means the replicas", "", replicas, ""},
		{"plus over the replicas", "+2", 5, ""},
		{"a number", "7", 7, ""},
		{"the limit itself", "65536", MaxAppPoolIPNumber, ""},
		{"fewer than the replicas", "2", nil, "fewer addresses"},
		{"not a number", "x", nil, "want a number"},
		{"trailing text", "5 pods", nil, "want a number"},
		{"trailing text after plus", "+2x", nil, "want a number"},
		{"a second sign", "++2", nil, "want a number"},
		{"negative", "-1", nil, "want a number"},
		{"over the limit", "65537", nil, "65536"},
		{"plus over the limit", "+65534", nil, "65536"},
		{"absurd", "1000000000000", nil, "65536"},
		{"absurd plus", "+1000000000000", nil, "65536"},
		{"overflows int64", "99999999999999999999999", nil, "65536"},
	}, func(a map[string]string) (any, error) {
		n, err := ParseIPNumber(a, replicas)
		return n, err
	})
}

// An absurd size is refused at once: the controller's single worker must not spend
// itself on one workload.
func TestAbsurdIPNumberIsRefusedQuickly(t *testing.T) {
	start := time.Now()
	if _, err := ParseIPNumber(map[string]string{AnnotationIPNumber: "+" + strings.Repeat("9", 10000)}, 3); err == nil {
		t.Fatal("accepted")
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("refusing took %s", d)
	}
}

func TestAnnotationReclaim(t *testing.T) {
	runAnnotationCases(t, AnnotationReclaim, []annotationCase{
		{"default true", "", true, ""},
		{"false", "false", false, ""},
		{"true", "true", true, ""},
		{"not a bool", "maybe", nil, `want "true" or "false"`},
		{"trailing text", "true!", nil, `want "true" or "false"`},
	}, func(a map[string]string) (any, error) { return ParseReclaim(a) })
}

func TestAnnotationRoutes(t *testing.T) {
	p := netip.MustParsePrefix
	runAnnotationCases(t, AnnotationRoutes, []annotationCase{
		{"absent", "", []PodRoute(nil), ""},
		{"routes with and without interface", `[{"dst":"10.0.0.0/8","gw":"10.250.1.1","interface":"net1"},{"dst":"fd00::/8"}]`,
			[]PodRoute{{Dst: p("10.0.0.0/8"), Gw: netip.MustParseAddr("10.250.1.1"), Interface: "net1"}, {Dst: p("fd00::/8")}}, ""},
		{"dst is masked", `[{"dst":"10.1.2.3/8"}]`, []PodRoute{{Dst: p("10.0.0.0/8")}}, ""},
		{"truncated", `{`, nil, "want a JSON list"},
		{"dst without prefix length", `[{"dst":"10.0.0.0"}]`, nil, "entry 0: dst \"10.0.0.0\" is not a CIDR"},
		{"gw not an address", `[{"dst":"10.0.0.0/8","gw":"nope"}]`, nil, "gw \"nope\" is not an IP address"},
		{"families differ", `[{"dst":"10.0.0.0/8","gw":"fd00::1"}]`, nil, "different families"},
		{"unknown field", `[{"dst":"10.0.0.0/8","via":"10.0.0.1"}]`, nil, "unknown field"},
		{"trailing garbage", `[{"dst":"10.0.0.0/8"}] ,`, nil, "after the JSON value"},
		{"trailing text in dst", `[{"dst":"10.0.0.0/8 x"}]`, nil, "is not a CIDR"},
		{"trailing text in gw", `[{"dst":"10.0.0.0/8","gw":"10.0.0.1x"}]`, nil, "is not an IP address"},
	}, func(a map[string]string) (any, error) { return ParseRoutes(a) })
}

func TestRoutesForAnInterface(t *testing.T) {
	a, err := ParsePodAnnotations(map[string]string{AnnotationRoutes: `[{"dst":"10.0.0.0/8","interface":"net1"},{"dst":"192.168.0.0/16"},{"dst":"172.16.0.0/12","interface":"net2"}]`})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range a.RoutesFor("net1") {
		got = append(got, r.Dst.String())
	}
	if strings.Join(got, ",") != "10.0.0.0/8,192.168.0.0/16" {
		t.Fatalf("net1 routes = %v", got)
	}
}

func TestAnnotationNamespaceDefaults(t *testing.T) {
	for _, key := range []string{AnnotationNSDefaultIPv4, AnnotationNSDefaultIPv6} {
		t.Run(key, func(t *testing.T) {
			runAnnotationCases(t, key, []annotationCase{
				{"JSON list", `["a","b"]`, []string{"a", "b"}, ""},
				{"comma list", "a, b", []string{"a", "b"}, ""},
				{"absent", "", []string(nil), ""},
				{"truncated JSON", `["a",`, nil, "want a JSON list of pool names"},
				{"trailing garbage", `["a"]]`, nil, "after the JSON value"},
				{"empty entry", "a,,b", nil, "entry 1 is empty"},
				{"trailing text in a comma list", "a, b c", nil, `entry 1: "b c" cannot name an object`},
				{"a JSON name that is none", `["a","b c"]`, nil, `entry 1: "b c" cannot name an object`},
			}, func(a map[string]string) (any, error) {
				ns, err := ParseNamespaceAnnotations(a)
				if key == AnnotationNSDefaultIPv6 {
					return ns.DefaultPools.IPv6, err
				}
				return ns.DefaultPools.IPv4, err
			})
		})
	}
}

// ippools wins for the interfaces it lists, even with no pool for one (the pod then
// falls to its next source, never to ippool); ippool serves every other interface.
func TestPoolsForAnInterface(t *testing.T) {
	a, err := ParsePodAnnotations(map[string]string{
		AnnotationIPPools: `[{"interface":"net1","ipv4":["a"]},{"interface":"net2"}]`,
		AnnotationIPPool:  `{"ipv4":["c"]}`,
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ ifName, key, v4 string }{
		{"net1", AnnotationIPPools, "a"}, {"net2", AnnotationIPPools, ""}, {"net3", AnnotationIPPool, "c"},
	} {
		t.Run(c.ifName, func(t *testing.T) {
			f, key := a.PoolsFor(c.ifName)
			if key != c.key || strings.Join(f.IPv4, ",") != c.v4 {
				t.Fatalf("PoolsFor(%s) = %v from %q, want %s from %s", c.ifName, f, key, c.v4, c.key)
			}
		})
	}
}

// One malformed annotation fails the pod's whole parse, naming the key.
func TestParsePodAnnotationsNamesTheBadKey(t *testing.T) {
	good := map[string]string{AnnotationIPPool: `{"ipv4":["a"]}`, AnnotationSubnet: `{"ipv4":["s"]}`, AnnotationRoutes: `[{"dst":"10.0.0.0/8"}]`}
	if _, err := ParsePodAnnotations(good); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{AnnotationIPPool, AnnotationIPPools, AnnotationSubnet, AnnotationSubnets, AnnotationRoutes} {
		t.Run(key, func(t *testing.T) {
			bad := map[string]string{}
			for k, v := range good {
				bad[k] = v
			}
			bad[key] = "{not json"
			if _, err := ParsePodAnnotations(bad); err == nil || !strings.Contains(err.Error(), key) {
				t.Fatalf("error %v does not name %s", err, key)
			}
		})
	}
}
