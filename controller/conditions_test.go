package controller

import (
	"context"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	v1 "github.com/underpool/underpool/api/v1"
)

// poolOf builds a pool of 10.9.0.0/24 (or the given subnet) handing out ips, holding
// allocated offsets.
func poolOf(name, subnet, ips, allocated string) v1.IPPool {
	p := v1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: v1.IPPoolSpec{Subnet: subnet}}
	if ips != "" {
		p.Spec.IPs = []string{ips}
	}
	p.Status.Allocated = allocated
	return p
}

func reservedOf(ips ...string) v1.ReservedIP {
	return v1.ReservedIP{ObjectMeta: metav1.ObjectMeta{Name: "r"}, Spec: v1.ReservedIPSpec{IPs: ips}}
}

// Each condition, for each reason it can have: the pool under test is always "p".
func TestPoolConditions(t *testing.T) {
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	quarantined := func(p v1.IPPool, ip string, until time.Time) v1.IPPool {
		p.Status.Quarantined = append(p.Status.Quarantined, v1.QuarantinedIP{IP: ip, Until: metav1.NewTime(until)})
		return p
	}
	for _, c := range []struct {
		name     string
		pools    []v1.IPPool
		reserved []v1.ReservedIP
		// want maps a condition type to its status, reason and words its message must hold
		want        map[string][3]string
		wantChanges time.Time
	}{
		{name: "free addresses", pools: []v1.IPPool{poolOf("p", "10.9.0.0/24", "10.9.0.10-10.9.0.12", "10-11")},
			want: map[string][3]string{
				v1.PoolExhausted:   {"False", ReasonAddressesFree, "addresses to hand out"},
				v1.PoolOverlapping: {"False", ReasonNoOverlap, "no address"},
				v1.PoolInvalid:     {"False", ReasonValid, "parse"}}},
		{name: "exhausted by allocation", pools: []v1.IPPool{poolOf("p", "10.9.0.0/24", "10.9.0.10-10.9.0.12", "10-12")},
			want: map[string][3]string{v1.PoolExhausted: {"True", ReasonNoFreeAddress, "the 3 usable addresses is taken: 3 allocated, 0 quarantined, 0 reserved"}}},
		{name: "exhausted with a reserved address", pools: []v1.IPPool{poolOf("p", "10.9.0.0/24", "10.9.0.10-10.9.0.12", "10-11")},
			reserved: []v1.ReservedIP{reservedOf("10.9.0.12")},
			want:     map[string][3]string{v1.PoolExhausted: {"True", ReasonNoFreeAddress, "2 allocated, 0 quarantined, 1 reserved or shared"}}},
		{name: "exhausted while an address is quarantined, until it ends",
			pools: []v1.IPPool{quarantined(poolOf("p", "10.9.0.0/24", "10.9.0.10-10.9.0.12", "10-11"), "10.9.0.12", now.Add(time.Minute))},
			want:  map[string][3]string{v1.PoolExhausted: {"True", ReasonNoFreeAddress, "2 allocated, 1 quarantined"}}, wantChanges: now.Add(time.Minute)},
		{name: "an ended quarantine frees its address",
			pools: []v1.IPPool{quarantined(poolOf("p", "10.9.0.0/24", "10.9.0.10-10.9.0.12", "10-11"), "10.9.0.12", now.Add(-time.Second))},
			want:  map[string][3]string{v1.PoolExhausted: {"False", ReasonAddressesFree, ""}}},
		{name: "exhausted by what another pool holds beyond its spec", pools: []v1.IPPool{
			poolOf("p", "10.9.0.0/24", "10.9.0.10-10.9.0.12", "10-11"),
			poolOf("q", "10.9.0.0/24", "10.9.0.20-10.9.0.29", "12")}, // q's spec was narrowed; it still holds .12
			want: map[string][3]string{v1.PoolExhausted: {"True", ReasonNoFreeAddress, "1 reserved or shared with another pool"},
				v1.PoolOverlapping: {"False", ReasonNoOverlap, ""}}},
		{name: "overlapping names the other pool and the first shared address", pools: []v1.IPPool{
			poolOf("p", "10.9.0.0/24", "10.9.0.10-10.9.0.20", ""),
			poolOf("q", "10.9.0.0/24", "10.9.0.15-10.9.0.30", ""),
			poolOf("z", "10.9.0.0/25", "", "")},
			want: map[string][3]string{
				v1.PoolOverlapping: {"True", ReasonSharesAddresses, "IPPool q, the first 10.9.0.15; IPPool z, the first 10.9.0.10"},
				v1.PoolExhausted:   {"True", ReasonNoFreeAddress, "11 reserved or shared"}}},
		{name: "a pool in another subnet does not overlap", pools: []v1.IPPool{
			poolOf("p", "10.9.0.0/24", "", ""), poolOf("q", "10.9.1.0/24", "", "")},
			want: map[string][3]string{v1.PoolOverlapping: {"False", ReasonNoOverlap, ""}}},
		{name: "invalid spec", pools: []v1.IPPool{poolOf("p", "10.9.0.0/24", "10.9.1.5", "")},
			want: map[string][3]string{
				v1.PoolInvalid:   {"True", ReasonInvalidSpec, "spec.ips"},
				v1.PoolExhausted: {"Unknown", ReasonNotCounted, "Invalid condition"}}},
		{name: "corrupt status.allocated", pools: []v1.IPPool{poolOf("p", "10.9.0.0/24", "", "5-x")},
			want: map[string][3]string{
				v1.PoolInvalid:   {"True", ReasonCorruptStatus, "status.allocated is corrupt"},
				v1.PoolExhausted: {"Unknown", ReasonNotCounted, ""}}},
		{name: "status.allocated past the subnet (1-400000 on a /24)", pools: []v1.IPPool{poolOf("p", "10.9.0.0/24", "", "1-400000")},
			want: map[string][3]string{
				v1.PoolInvalid:   {"True", ReasonCorruptStatus, "status.allocated is corrupt (offset 400000 lies outside subnet 10.9.0.0/24"},
				v1.PoolExhausted: {"Unknown", ReasonNotCounted, ""}}},
		{name: "status.allocated of 2^32 offsets names the fix", pools: []v1.IPPool{poolOf("p", "10.9.0.0/24", "", "0-4294967295")},
			want: map[string][3]string{
				v1.PoolInvalid: {"True", ReasonCorruptStatus, "kubectl edit ippool p --subresource=status"}}},
		{name: "a pool beside one with a status past its subnet is counted as usual", pools: []v1.IPPool{
			poolOf("p", "10.9.0.0/24", "10.9.0.10-10.9.0.12", "10"),
			poolOf("q", "10.9.0.0/25", "10.9.0.100-10.9.0.110", "0-4294967295")}, // corrupt: held at its widest, its own /25
			want: map[string][3]string{
				v1.PoolInvalid:   {"False", ReasonValid, ""},
				v1.PoolExhausted: {"True", ReasonNoFreeAddress, "2 reserved or shared with another pool"}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, changes := conditionsOf(c.pools, c.reserved, now)
			if !changes.Equal(c.wantChanges) {
				t.Errorf("next change at %v, want %v", changes, c.wantChanges)
			}
			if len(got["p"]) != 3 {
				t.Fatalf("got %d conditions, want Exhausted, Overlapping, Invalid: %+v", len(got["p"]), got["p"])
			}
			for typ, w := range c.want {
				cond := meta.FindStatusCondition(got["p"], typ)
				if cond == nil {
					t.Fatalf("no %s condition in %+v", typ, got["p"])
				}
				if string(cond.Status) != w[0] || cond.Reason != w[1] || !strings.Contains(cond.Message, w[2]) {
					t.Errorf("%s: got %s %s %q, want %s %s and a message with %q", typ, cond.Status, cond.Reason, cond.Message, w[0], w[1], w[2])
				}
			}
		})
	}
}

// The reconciler patches only the conditions, guarded by resourceVersion: a pool whose
// allocation state changed since the controller read it keeps that state, and an unchanged
// pool is not written at all.
func TestPoolConditionsPatchOnlyConditions(t *testing.T) {
	ctx := context.Background()
	pool := poolOf("p", "10.9.0.0/24", "10.9.0.10-10.9.0.11", "10-11")
	pool.Status.AllocatedIPCount = 2
	c := fake.NewClientBuilder().WithScheme(testScheme(t)).WithObjects(&pool).WithStatusSubresource(&v1.IPPool{}).Build()
	r := &poolConditions{c: c}
	if _, err := r.Reconcile(ctx, reconcile.Request{}); err != nil {
		t.Fatal(err)
	}
	var got v1.IPPool
	if err := c.Get(ctx, client.ObjectKey{Name: "p"}, &got); err != nil {
		t.Fatal(err)
	}
	if !meta.IsStatusConditionTrue(got.Status.Conditions, v1.PoolExhausted) || got.Status.Allocated != "10-11" || got.Status.AllocatedIPCount != 2 {
		t.Fatalf("want Exhausted and the allocation kept, got %+v", got.Status)
	}
	rv := got.ResourceVersion
	if _, err := r.Reconcile(ctx, reconcile.Request{}); err != nil {
		t.Fatal(err)
	}
	if err := c.Get(ctx, client.ObjectKey{Name: "p"}, &got); err != nil || got.ResourceVersion != rv {
		t.Fatalf("an unchanged pool was written again (resourceVersion %s -> %s, %v)", rv, got.ResourceVersion, err)
	}

	// ipamd frees an address (a full status update) after the controller read the pool:
	// the controller's patch of what it read conflicts instead of writing stale state
	stale := got.DeepCopy()
	got.Status.Allocated, got.Status.AllocatedIPCount = "10", 1
	if err := c.Status().Update(ctx, &got); err != nil {
		t.Fatal(err)
	}
	patch := client.MergeFromWithOptions(stale.DeepCopy(), client.MergeFromWithOptimisticLock{})
	meta.SetStatusCondition(&stale.Status.Conditions, metav1.Condition{Type: v1.PoolExhausted, Status: metav1.ConditionFalse, Reason: "x", Message: "x"})
	if err := c.Status().Patch(ctx, stale, patch); err == nil {
		t.Fatal("a patch of a stale read was applied")
	}
	if _, err := r.Reconcile(ctx, reconcile.Request{}); err != nil {
		t.Fatal(err)
	}
	if err := c.Get(ctx, client.ObjectKey{Name: "p"}, &got); err != nil {
		t.Fatal(err)
	}
	if meta.IsStatusConditionTrue(got.Status.Conditions, v1.PoolExhausted) || got.Status.Allocated != "10" {
		t.Fatalf("want not Exhausted and ipamd's write kept, got %+v", got.Status)
	}
}
