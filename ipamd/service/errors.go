package service

import (
	"fmt"

	"github.com/underpool/underpool/rpc"
)

func badRequest(field, format string, args ...any) *rpc.Error {
	return &rpc.Error{Code: rpc.CodeBadRequest, Field: field, Message: fmt.Sprintf(format, args...)}
}

func internal(format string, args ...any) *rpc.Error {
	return &rpc.Error{Code: rpc.CodeInternal, Message: fmt.Sprintf(format, args...)}
}

func validateAllocate(req *rpc.AllocateRequest) *rpc.Error {
	switch {
	case req.ContainerID == "":
		return badRequest("containerID", "containerID is empty: the runtime's CNI_CONTAINERID must be set")
	case req.IfName == "":
		return badRequest("ifName", "ifName is empty: the runtime's CNI_IFNAME must be set")
	case req.Pod.Namespace == "" || req.Pod.Name == "":
		return badRequest("pod", "pod namespace and name are empty: CNI_ARGS must carry K8S_POD_NAMESPACE and K8S_POD_NAME")
	}
	return nil
}
