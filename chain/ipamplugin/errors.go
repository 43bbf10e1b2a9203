package ipamplugin

import (
	"errors"
	"fmt"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/underpool/underpool/rpc"
)

// Both plugins answer the runtime with the same CNI error codes; these are their makers.

// ipamdError turns an ipamd error into a CNI error with a code a runtime can act on:
// unreachable or not-ready ipamd is "try again later" (11). doing says what the plugin
// asked for ("allocating addresses").
func ipamdError(doing string, err error) error {
	var e *rpc.Error
	if !errors.As(err, &e) {
		return types.NewError(types.ErrInternal, doing+": "+err.Error(), "")
	}
	code := e.Code
	if code == rpc.CodeUnreachable {
		code = types.ErrTryAgainLater
	}
	return types.NewError(code, doing+": "+e.Message, e.Field)
}

// InvalidConfig is a network config the runtime must fix; retrying cannot help.
func InvalidConfig(err error) error {
	return types.NewError(types.ErrInvalidNetworkConfig, err.Error(), "")
}

// TryAgainLater is a failure a retry of the same request may not meet (another address,
// a daemon that became ready).
func TryAgainLater(err error) error {
	return types.NewError(types.ErrTryAgainLater, err.Error(), "")
}

// InternalError is any other failure, formatted like fmt.Errorf.
func InternalError(format string, args ...any) error {
	return types.NewError(types.ErrInternal, fmt.Sprintf(format, args...), "")
}

func isUnreachable(err error) bool {
	var e *rpc.Error
	return errors.As(err, &e) && e.Code == rpc.CodeUnreachable
}
