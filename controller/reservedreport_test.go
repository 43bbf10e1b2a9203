package controller

import (
	"context"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	v1 "github.com/underpool/underpool/api/v1"
)

func reservedIP(name string, ips ...string) *v1.ReservedIP {
	return &v1.ReservedIP{ObjectMeta: metav1.ObjectMeta{Name: name, Generation: 1}, Spec: v1.ReservedIPSpec{IPs: ips}}
}

// A ReservedIP with bad entries that got past the webhook gets one Warning event per
// generation and the underpool_reservedip_invalid series; both go once it is fixed.
func TestABadReservedIPIsReportedOncePerGeneration(t *testing.T) {
	bad := reservedIP("rep", "10.0.0.10", "10.0.0.30-10.0.0.20", "nonsense")
	api := fake.NewClientBuilder().WithScheme(testScheme(t)).WithObjects(bad).Build()
	rec := events.NewFakeRecorder(10)
	m := testMetrics(t)
	r := &reservedReport{c: api, events: rec, invalid: m.reservedInvalid}
	req := reconcile.Request{NamespacedName: types.NamespacedName{Name: "rep"}}
	for range 2 {
		if _, err := r.Reconcile(context.Background(), req); err != nil {
			t.Fatal(err)
		}
	}
	if got := testutil.ToFloat64(m.reservedInvalid.WithLabelValues("rep")); got != 2 {
		t.Fatalf("underpool_reservedip_invalid{reservedip=rep} = %v, want 2", got)
	}
	if n := len(rec.Events); n != 1 {
		t.Fatalf("%d events for one generation, want 1", n)
	}
	ev := <-rec.Events
	for _, want := range []string{ReasonInvalidEntries, "spec.ips[1]: range 10.0.0.30-10.0.0.20 is reversed: write 10.0.0.20-10.0.0.30", "spec.ips[2]", "The other entries are reserved"} {
		if !strings.Contains(ev, want) {
			t.Fatalf("event %q does not say %q", ev, want)
		}
	}
	fixed := &v1.ReservedIP{}
	if err := api.Get(context.Background(), client.ObjectKey{Name: "rep"}, fixed); err != nil {
		t.Fatal(err)
	}
	fixed.Spec.IPs = []string{"10.0.0.10", "10.0.0.20-10.0.0.30"}
	if err := api.Update(context.Background(), fixed); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Reconcile(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	if n := testutil.CollectAndCount(m.reservedInvalid, "underpool_reservedip_invalid"); n != 0 {
		t.Fatalf("%d series left after the fix, want none", n)
	}
}
