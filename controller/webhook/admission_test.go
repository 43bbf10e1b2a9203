package webhook

import (
	"context"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
)

// A pool being deleted is validated like any other when its spec changes; an update that
// keeps the spec (a finalizer going) passes even when an overlap already exists.
func TestWebhookValidatesUpdatesOfAPoolBeingDeleted(t *testing.T) {
	live := pool("live", "10.0.0.0/24", "10.0.0.10-10.0.0.20")
	leaving := pool("leaving", "10.0.0.0/24", "10.0.0.30-10.0.0.40")
	now := metav1.Now()
	leaving.DeletionTimestamp, leaving.Finalizers = &now, []string{"underpool.io/pool-protection"}
	v := &poolValidator{api: fake.NewClientBuilder().WithScheme(testScheme(t)).WithObjects(&live, &leaving).Build(), metrics: NewMetrics(nil)}

	grown := *leaving.DeepCopy()
	grown.Spec.IPs = []string{"10.0.0.15-10.0.0.40"}
	if _, err := v.ValidateUpdate(context.Background(), &leaving, &grown); err == nil || !strings.Contains(err.Error(), "overlaps IPPool live") {
		t.Fatalf("a deleting pool grown over another: %v", err)
	}
	// an overlap written past the webhook must not keep the finalizer from going
	overlapping := *leaving.DeepCopy()
	overlapping.Spec.IPs = []string{"10.0.0.20-10.0.0.40"}
	released := *overlapping.DeepCopy()
	released.Finalizers = nil
	if _, err := v.ValidateUpdate(context.Background(), &overlapping, &released); err != nil {
		t.Fatalf("removing the finalizer of an unchanged spec: %v", err)
	}
}
