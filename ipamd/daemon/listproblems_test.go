package daemon

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	toolscache "k8s.io/client-go/tools/cache"
)

// Before the first sync a failing list becomes the not-ready reason (the field selector
// one with its cause and fix), logged once per distinct reason; a watch that merely ends
// is no problem, and after the sync nothing is reported any more.
func TestListProblemsReportTheirCauseUntilSynced(t *testing.T) {
	core, logs := observer.New(zap.InfoLevel)
	l := &listProblems{log: zap.New(core)}
	r := toolscache.NewReflector(&toolscache.ListWatch{}, &corev1.Pod{}, toolscache.NewStore(toolscache.MetaNamespaceKeyFunc), 0)
	var reasons []string
	l.reportTo(func(r string) { reasons = append(reasons, r) })
	refused := apierrors.NewBadRequest("field label not supported: status.node")
	l.handle(context.Background(), r, refused)
	l.handle(context.Background(), r, refused)
	l.handle(context.Background(), r, io.EOF)
	if len(reasons) != 2 || !strings.Contains(reasons[0], "Kubernetes >= 1.31") || !strings.Contains(reasons[0], "deploy/crds") {
		t.Fatalf("reasons %q: want the field selector's cause and fix, twice", reasons)
	}
	if n := logs.Len(); n != 1 {
		t.Fatalf("%d log lines for one reason repeated, want 1", n)
	}
	forbidden := apierrors.NewForbidden(schema.GroupResource{Resource: "pods"}, "", errors.New("RBAC"))
	l.handle(context.Background(), r, forbidden)
	if last := reasons[len(reasons)-1]; !strings.Contains(last, "informer caches not synced") || !strings.Contains(last, "forbidden") {
		t.Fatalf("a generic list error's reason %q does not say what failed", last)
	}
	l.synced.Store(true)
	n := len(reasons)
	l.handle(context.Background(), r, refused)
	if len(reasons) != n {
		t.Fatal("a list error after the first sync changed readiness")
	}
}
