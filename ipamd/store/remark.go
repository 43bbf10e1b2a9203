package store

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// Reasons a pool cannot be used, as metric labels.
const (
	ReasonInvalidSpec   = "invalid_spec"
	ReasonCorruptStatus = "corrupt_status"
	ReasonWriteFailed   = "write_failed"
)

// UnusableError says a pool hands nothing out until an operator repairs it. Only requests
// that need this pool fail; selection moves on to the next candidate.
type UnusableError struct {
	Pool   string
	Reason string // ReasonInvalidSpec or ReasonCorruptStatus
	Err    error
}

func (e *UnusableError) Error() string {
	if e.Reason == ReasonCorruptStatus {
		return fmt.Sprintf("IPPool %s: its PoolAllocation state.allocated is corrupt (%v); nothing is handed out from it until it is repaired: "+
			"write back the offsets its Endpoints hold (kubectl edit poolallocation %s) or delete the pool once no pod uses it",
			e.Pool, e.Err, e.Pool)
	}
	return fmt.Sprintf("IPPool %s is invalid (%v); nothing is handed out from it until its spec is fixed (kubectl edit ippool %s)",
		e.Pool, e.Err, e.Pool)
}

func (e *UnusableError) Unwrap() error { return e.Err }

// reasonOf classifies a failed re-mark for the metric.
func reasonOf(err error) string {
	var u *UnusableError
	if errors.As(err, &u) {
		return u.Reason
	}
	return ReasonWriteFailed
}

// remarkOp is the ensure of the pool's pending re-mark, or nil when none is pending. The
// batch carries it first, so its bookkeeping (remarkDone) is settled before any op of the
// batch is answered: a caller whose Remark or allocation returned sees PendingRemarks and
// the metric as that commit left them.
func (p *PoolCommitter) remarkOp(name string, q *poolQueue) *poolOp {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(q.remark) == 0 {
		return nil
	}
	op := &poolOp{kind: opEnsure, addrs: append([]netip.Addr(nil), q.remark...), done: make(chan opResult, 1)}
	op.settle = func(r opResult) { p.remarkDone(name, q, op, r) }
	return op
}

// remarkDone drops the re-mark a batch carried once it is committed (or its pool is gone:
// a pool that no longer exists hands nothing out), and keeps the metric saying which pools
// wait for one. finish runs it, and every path of commit ends in finish.
func (p *PoolCommitter) remarkDone(name string, q *poolQueue, op *poolOp, r opResult) {
	done := r.err == nil || errors.Is(r.err, ErrPoolNotFound)
	p.mu.Lock()
	if done {
		q.remark = q.remark[len(op.addrs):] // it only grew meanwhile
		if len(q.remark) == 0 {
			q.remark = nil
		}
	}
	p.mu.Unlock()
	p.metrics.PendingRemark.DeletePartialMatch(prometheus.Labels{"pool": name})
	switch {
	case r.err == nil:
		p.log.Info("re-marked the addresses this node's Endpoints hold; the pool serves again",
			zap.String("pool", name), zap.Int("addresses", len(op.addrs)), zap.Int("lost", len(r.lost)))
	case done:
		p.log.Warn("endpoints hold addresses of a pool that is gone", zap.String("pool", name), zap.Int("addresses", len(op.addrs)))
	default:
		p.metrics.PendingRemark.WithLabelValues(name, reasonOf(r.err)).Set(float64(len(op.addrs)))
	}
}
