package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"

	"go.uber.org/zap"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	toolscache "k8s.io/client-go/tools/cache"
)

// listProblems turns what the informers' lists and watches fail with before the caches
// first sync into ipamd's not-ready reason (/readyz, the socket's status) and a log line.
// Without it ipamd waits for caches that never sync, saying only that they have not: on
// Kubernetes before 1.31, or with an Endpoint CRD older than its selectableFields, the
// Endpoint list by status.node is refused on every retry. The informers keep retrying, so
// ipamd goes on as soon as the cause is fixed. After the first sync, errors are the
// informers' own business again (client-go's default handler).
type listProblems struct {
	log    *zap.Logger
	synced atomic.Bool

	mu     sync.Mutex
	report func(reason string) // the service's SetNotReady, once it exists
	last   string
}

// handle is the informers' WatchErrorHandler (cache.Options.DefaultWatchErrorHandler).
func (l *listProblems) handle(ctx context.Context, r *toolscache.Reflector, err error) {
	if l.synced.Load() || !startupProblem(err) {
		toolscache.DefaultWatchErrorHandler(ctx, r, err)
		return
	}
	what := "a resource"
	if r != nil && r.TypeDescription() != "" {
		what = r.TypeDescription()
	}
	reason := listFailureReason(what, err)
	l.mu.Lock()
	changed, report := reason != l.last, l.report
	l.last = reason
	l.mu.Unlock()
	if changed {
		l.log.Error("an informer cannot list, so ipamd cannot sync its caches and serves no allocation; it retries",
			zap.String("resource", what), zap.String("reason", reason), zap.Error(err))
	}
	if report != nil {
		report(reason)
	}
}

// reportTo sends the reasons, the last one first, to report from now on.
func (l *listProblems) reportTo(report func(reason string)) {
	l.mu.Lock()
	l.report = report
	last := l.last
	l.mu.Unlock()
	if last != "" {
		report(last)
	}
}

// startupProblem: an error that says why a cache cannot sync, not a watch ending as
// watches do (closed, or its resourceVersion expired: the informer lists again).
func startupProblem(err error) bool {
	return err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) &&
		!apierrors.IsResourceExpired(err) && !apierrors.IsGone(err)
}

// listFailureReason names the cause and the fix where it is known.
func listFailureReason(what string, err error) string {
	if fieldSelectorRefused(err) {
		return fmt.Sprintf("the API refuses to list Endpoints by the field status.node (%v): ipamd needs Kubernetes >= 1.31 "+
			"(CRD selectableFields) and this release's Endpoint CRD: upgrade the cluster, or re-apply the CRDs "+
			"(kubectl apply -f deploy/crds/; Helm installs CRDs but never upgrades them); ipamd retries and serves once the list succeeds", err)
	}
	return fmt.Sprintf("informer caches not synced: listing %s fails (ipamd retries): %v", what, err)
}

// fieldSelectorRefused: the apiserver does not know status.node as a field of Endpoints
// (an apiserver before 1.31 drops the CRD's selectableFields; an old CRD lacks them).
func fieldSelectorRefused(err error) bool {
	msg := err.Error()
	return strings.Contains(msg, "field label not supported") && strings.Contains(msg, "status.node")
}
