package ipamplugin

import (
	"fmt"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/underpool/underpool/rpc"
)

// k8sArgs are the CNI_ARGS keys a Kubernetes runtime passes.
type k8sArgs struct {
	types.CommonArgs
	K8S_POD_NAMESPACE          types.UnmarshallableString //nolint:revive // names fixed by the runtime
	K8S_POD_NAME               types.UnmarshallableString //nolint:revive
	K8S_POD_INFRA_CONTAINER_ID types.UnmarshallableString //nolint:revive
	K8S_POD_UID                types.UnmarshallableString //nolint:revive
}

// podFromArgs reads the pod identity from CNI_ARGS.
func podFromArgs(args string) (rpc.Pod, error) {
	a := k8sArgs{}
	a.IgnoreUnknown = true
	if err := types.LoadArgs(args, &a); err != nil {
		return rpc.Pod{}, fmt.Errorf("CNI_ARGS %q: %v", args, err)
	}
	return rpc.Pod{Namespace: string(a.K8S_POD_NAMESPACE), Name: string(a.K8S_POD_NAME), UID: string(a.K8S_POD_UID)}, nil
}
