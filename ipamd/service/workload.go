package service

import (
	"context"
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/underpool/underpool/core/apppool"
	"github.com/underpool/underpool/core/selection"
	"github.com/underpool/underpool/rpc"
)

// workloadAbove reads the controller of the pod's ReplicaSet or Job, for a pod whose
// interface uses its workload's application pool: a CronJob's pod names only its Job, a
// bare ReplicaSet's pod looks like any other ReplicaSet's. One uncached read by name, only
// for such pods (a Deployment's pods need none), so the node caches nothing of the
// cluster's workloads (invariant 10).
func (s *Service) workloadAbove(ctx context.Context, in *selection.Input) (*metav1.OwnerReference, error) {
	if f, _ := in.PodAnnotations.PoolsFor(in.IfName); !f.Empty() {
		return nil, nil // the pod names its pools: no application pool
	}
	if _, wanted := in.PodAnnotations.Subnets.For(in.IfName); !wanted {
		return nil, nil
	}
	kind, name, ok := apppool.Intermediate(in.Pod)
	if !ok {
		return nil, nil
	}
	above, err := s.Cluster.ControllerOf(ctx, kind, in.Pod.Namespace, name)
	if err != nil {
		return nil, &rpc.Error{Code: rpc.CodeTryAgainLater, Message: fmt.Sprintf(
			"reading %s %s/%s, whose controller is the workload of pod %s's application pool: %v", kind, in.Pod.Namespace, name, in.Pod.Name, err)}
	}
	return above, nil
}
