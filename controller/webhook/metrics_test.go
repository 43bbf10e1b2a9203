package webhook

import (
	"context"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	v1 "github.com/underpool/underpool/api/v1"
)

// Each refusal validatePool and validateSubnet make is counted under its own reason: the
// reasons come from their messages, so a reworded message must not fall into invalid_spec.
func TestWebhookRejectionReasons(t *testing.T) {
	held := &v1.IPPool{Spec: v1.IPPoolSpec{Subnet: "10.9.0.0/24"}} // its state holds offset 5
	held.Name = "held"
	other := v1.IPPool{Spec: v1.IPPoolSpec{Subnet: "10.9.0.0/24", IPs: []string{"10.9.0.10-10.9.0.20"}}}
	other.Name = "other"
	sub := &v1.Subnet{Spec: v1.SubnetSpec{Subnet: "10.9.0.0/16"}}
	sub.Name = "s"
	for _, c := range []struct {
		name string
		err  error
		want string
	}{
		{"overlap", validatePool(&v1.IPPool{Spec: v1.IPPoolSpec{Subnet: "10.9.0.0/24"}}, nil, "", []v1.IPPool{other}), "overlap"},
		{"subnet change while allocated", validatePool(&v1.IPPool{Spec: v1.IPPoolSpec{Subnet: "10.8.0.0/24"}}, held, "5", nil), "removes_allocated"},
		{"range drops allocated", validatePool(&v1.IPPool{Spec: v1.IPPoolSpec{Subnet: "10.9.0.0/24", IPs: []string{"10.9.0.100-10.9.0.110"}}}, held, "5", nil), "removes_allocated"},
		{"subnet delete orphans pools", validateSubnet(sub, sub, []v1.IPPool{other}, true), "orphans_pools"},
		{"bad spec", validatePool(&v1.IPPool{Spec: v1.IPPoolSpec{Subnet: "nonsense"}}, nil, "", nil), "invalid_spec"},
		{"two networks render one NAD", sameNAD(underlayNetwork("b", "ns"), []v1.UnderlayNetwork{*underlayNetwork("b", "ns"), *renamed(underlayNetwork("b2", "ns"), "b")}), "nad_conflict"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if c.err == nil {
				t.Fatal("the validator admitted it")
			}
			if got := rejectionReason(c.err); got != c.want {
				t.Fatalf("reason of %q = %s, want %s", c.err, got, c.want)
			}
		})
	}
}

// renamed is n rendering its NADs under name.
func renamed(n *v1.UnderlayNetwork, name string) *v1.UnderlayNetwork {
	n.Spec.NADName = name
	return n
}

// A refusal is counted on the registry passed in.
func TestARefusalIsCountedOnTheRegistryPassedIn(t *testing.T) {
	reg := prometheus.NewRegistry()
	v := reservedValidator{metrics: NewMetrics(reg)}
	bad := &v1.ReservedIP{Spec: v1.ReservedIPSpec{IPs: []string{"10.0.0.2-10.0.0.1"}}}
	if _, err := v.ValidateCreate(context.Background(), bad); err == nil {
		t.Fatal("a reversed range was admitted")
	}
	if n, err := testutil.GatherAndCount(reg, "underpool_webhook_rejections_total"); err != nil || n != 1 {
		t.Fatalf("%d rejection series on the registry passed in (%v), want 1", n, err)
	}
	if got := testutil.ToFloat64(v.metrics.rejections.WithLabelValues("ReservedIP", "invalid_spec")); got != 1 {
		t.Fatalf("underpool_webhook_rejections_total{kind=ReservedIP,reason=invalid_spec} = %v, want 1", got)
	}
}
