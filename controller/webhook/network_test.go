package webhook

import (
	"context"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	v1 "github.com/underpool/underpool/api/v1"
)

func underlayNetwork(name string, namespaces ...string) *v1.UnderlayNetwork {
	return &v1.UnderlayNetwork{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: v1.UnderlayNetworkSpec{
		Namespaces: namespaces, Macvlan: &v1.MacvlanNetwork{Master: "eth1"}, IPAM: v1.NetworkIPAM{IPv4Pools: []string{"v4"}}}}
}

func networkValidatorOver(t *testing.T, objs ...client.Object) *networkValidator {
	t.Helper()
	api := fake.NewClientBuilder().WithScheme(testScheme(t)).WithObjects(objs...).Build()
	return &networkValidator{api: api, metrics: NewMetrics(nil)}
}

// The webhook refuses a network whose spec does not render, naming each field and its
// fix (nadgen.Validate), and counts it as invalid_spec.
func TestNetworkWebhookRefusesASpecThatDoesNotRender(t *testing.T) {
	v := networkValidatorOver(t, &v1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: "v4"}, Spec: v1.IPPoolSpec{Subnet: "10.0.0.0/24"}})
	bad := underlayNetwork("storage", "a")
	bad.Spec.Macvlan.Mode, bad.Spec.IPAM.IPv4Pools = "l2", []string{"10.0.0.0/24"}
	_, err := v.ValidateCreate(context.Background(), bad)
	for _, want := range []string{`storage: spec.macvlan.mode: "l2" is not one of bridge, private, vepa, passthru`, `spec.ipam.ipv4Pools[0]: "10.0.0.0/24" is a CIDR: name an IPPool object instead`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("error %v, want one saying %q", err, want)
		}
	}
	if got := testutil.ToFloat64(v.metrics.rejections.WithLabelValues("UnderlayNetwork", "invalid_spec")); got != 1 {
		t.Fatalf("rejections{UnderlayNetwork,invalid_spec} = %v, want 1", got)
	}
	if _, err := v.ValidateCreate(context.Background(), underlayNetwork("storage", "a")); err != nil {
		t.Fatalf("a good network refused: %v", err)
	}
}

// Two networks may not render one NAD: the second is refused naming the first, the
// namespace and the fix; the same NAD name in other namespaces, or another name in the
// same namespace, is fine, and so is an update of the network itself.
func TestNetworkWebhookRefusesASecondNetworkRenderingTheSameNAD(t *testing.T) {
	first := underlayNetwork("storage", "a", "b")
	v := networkValidatorOver(t, first)
	second := underlayNetwork("second", "c", "b")
	second.Spec.NADName = "storage"
	_, err := v.ValidateCreate(context.Background(), second)
	want := "spec.namespaces: UnderlayNetwork storage already renders NetworkAttachmentDefinition b/storage: set spec.nadName to another name, or drop b from one of them"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("error %v, want %q", err, want)
	}
	if got := testutil.ToFloat64(v.metrics.rejections.WithLabelValues("UnderlayNetwork", "nad_conflict")); got != 1 {
		t.Fatalf("rejections{UnderlayNetwork,nad_conflict} = %v, want 1", got)
	}
	second.Spec.Namespaces = []string{"c"}
	if _, err := v.ValidateCreate(context.Background(), second); err != nil {
		t.Fatalf("the same name in another namespace: %v", err)
	}
	second.Spec.Namespaces, second.Spec.NADName = []string{"b"}, "second"
	if _, err := v.ValidateCreate(context.Background(), second); err != nil {
		t.Fatalf("another name in the same namespace: %v", err)
	}
	changed := first.DeepCopy()
	changed.Spec.Macvlan.Master = "eth2"
	if _, err := v.ValidateUpdate(context.Background(), first, changed); err != nil {
		t.Fatalf("an update of the network itself: %v", err)
	}
}

// A pool of the other family is refused naming both lists; a pool that does not exist
// yet is admitted with a warning naming it.
func TestNetworkWebhookChecksThePoolsFamilies(t *testing.T) {
	v := networkValidatorOver(t,
		&v1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: "v4"}, Spec: v1.IPPoolSpec{Subnet: "10.0.0.0/24"}},
		&v1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: "v6"}, Spec: v1.IPPoolSpec{Subnet: "fd00::/64"}})
	n := underlayNetwork("storage", "a")
	n.Spec.IPAM = v1.NetworkIPAM{IPv4Pools: []string{"v6"}, IPv6Pools: []string{"v4"}}
	_, err := v.ValidateCreate(context.Background(), n)
	for _, want := range []string{"spec.ipam.ipv4Pools[0]: IPPool v6 is IPv6 (subnet fd00::/64): move it to spec.ipam.ipv6Pools",
		"spec.ipam.ipv6Pools[0]: IPPool v4 is IPv4 (subnet 10.0.0.0/24): move it to spec.ipam.ipv4Pools"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("error %v, want one saying %q", err, want)
		}
	}
	n.Spec.IPAM = v1.NetworkIPAM{IPv4Pools: []string{"v4", "later"}, IPv6Pools: []string{"v6"}}
	warnings, err := v.ValidateCreate(context.Background(), n)
	if err != nil {
		t.Fatalf("refused: %v", err)
	}
	if len(warnings) != 1 || !strings.Contains(warnings[0], "spec.ipam.ipv4Pools[1]: IPPool later does not exist (yet)") {
		t.Fatalf("warnings %q, want one naming the missing pool", warnings)
	}
}

// A bad route is refused naming spec.routes[i] and the fix; a route of a family the
// network names no pool of is admitted with a warning naming it and the list to fill.
func TestNetworkWebhookChecksTheRoutes(t *testing.T) {
	v := networkValidatorOver(t, &v1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: "v4"}, Spec: v1.IPPoolSpec{Subnet: "10.0.0.0/24"}})
	n := underlayNetwork("storage", "a")
	n.Spec.Routes = []v1.NetworkRoute{{Dst: "10.1.0.0/16", Gw: "fd00::1"}}
	_, err := v.ValidateCreate(context.Background(), n)
	if want := "spec.routes[0]: gw fd00::1 and dst 10.1.0.0/16 are of different families"; err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("error %v, want one saying %q", err, want)
	}
	n.Spec.Routes = []v1.NetworkRoute{{Dst: "10.1.0.0/16", Gw: "10.0.0.254"}, {Dst: "fd00:1::/48"}}
	warnings, err := v.ValidateCreate(context.Background(), n)
	if err != nil {
		t.Fatalf("refused: %v", err)
	}
	if len(warnings) != 1 || !strings.Contains(warnings[0], "spec.routes[1]: fd00:1::/48 is IPv6 and spec.ipam names no IPv6 pool") ||
		!strings.Contains(warnings[0], "add one to spec.ipam.ipv6Pools") {
		t.Fatalf("warnings %q, want one naming spec.routes[1] and spec.ipam.ipv6Pools", warnings)
	}
}

// A metadata edit of a network that got in before a rule passes; a spec change is checked.
func TestNetworkWebhookChecksOnlySpecChanges(t *testing.T) {
	v := networkValidatorOver(t)
	old := underlayNetwork("storage", "a")
	old.Spec.Macvlan.Mode = "l3"
	labelled := old.DeepCopy()
	labelled.Labels = map[string]string{"team": "net"}
	if _, err := v.ValidateUpdate(context.Background(), old, labelled); err != nil {
		t.Fatalf("a label edit: %v", err)
	}
	changed := old.DeepCopy()
	changed.Spec.Namespaces = []string{"a", "b"}
	if _, err := v.ValidateUpdate(context.Background(), old, changed); err == nil || !strings.Contains(err.Error(), "spec.macvlan.mode") {
		t.Fatalf("a spec change keeping the bad mode: %v", err)
	}
}
