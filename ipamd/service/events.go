package service

import (
	"errors"

	corev1 "k8s.io/api/core/v1"

	"github.com/underpool/underpool/core/selection"
	"github.com/underpool/underpool/rpc"
)

// ReasonAllocationFailed is the reason of the Warning event a pod gets when ipamd gives it
// no address.
const ReasonAllocationFailed = "AllocationFailed"

// allocationFailed records on the pod why it got no address: the error names every pool
// tried and why each was passed over, so `kubectl describe pod` says it beside the
// runtime's own sandbox error. The recorder folds repeats of a retried ADD. Answers that
// ask to retry (a cache not caught up, an application pool not carved yet) and lookups of
// what the pod holds are not failures of the pod's allocation.
func (s *Service) allocationFailed(in *selection.Input, err error) {
	if err == nil || s.Events == nil || in == nil || in.Pod == nil {
		return
	}
	var e *rpc.Error
	if errors.As(err, &e) && (e.Code == rpc.CodeTryAgainLater || e.Code == rpc.CodeNotHeld) {
		return
	}
	s.Events.Eventf(in.Pod, corev1.EventTypeWarning, ReasonAllocationFailed, "interface %s: %s", in.IfName, err.Error())
}
