package selection

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/underpool/underpool/api/v1"
)

// A pool's affinity is converted to a selector once per spec generation, not on every
// ADD (issue 11: per-request work of the IPAM path); a new generation is converted
// again, so a changed affinity takes effect at once.
func TestEligibleConvertsAnAffinityOncePerGeneration(t *testing.T) {
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1", Labels: map[string]string{"zone": "a"}}}
	in := &Input{Node: node}
	pool := &v1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: "p", UID: "uid-p", Generation: 1},
		Spec: v1.IPPoolSpec{NodeAffinity: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
			{Key: "zone", Operator: metav1.LabelSelectorOpIn, Values: []string{"a", "b"}}}}}}
	if ok, why := Eligible(pool, in); !ok {
		t.Fatalf("zone a not eligible: %s", why)
	}
	uncached := pool.DeepCopy()
	uncached.UID = ""
	perCall := testing.AllocsPerRun(50, func() { Eligible(uncached, in) })
	cached := testing.AllocsPerRun(50, func() { Eligible(pool, in) })
	if cached >= perCall {
		t.Fatalf("Eligible allocates %.0f times per call for an unchanged pool, as many as converting its affinity (%.0f)", cached, perCall)
	}

	pool.Spec.NodeAffinity.MatchExpressions[0].Values = []string{"b"}
	pool.Generation = 2
	if ok, why := Eligible(pool, in); ok || !strings.Contains(why, "nodeAffinity") {
		t.Fatalf("generation 2 excludes zone a, got eligible=%v %q", ok, why)
	}
}
