package chain

import (
	"errors"
	"fmt"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/underpool/underpool/ipamd/rpc"
)

// cniError turns an ipamd error into a CNI error with a code a runtime can act on:
// unreachable or not-ready ipamd is "try again later" (11).
func cniError(context string, err error) error {
	var e *rpc.Error
	if !errors.As(err, &e) {
		return types.NewError(types.ErrInternal, context+": "+err.Error(), "")
	}
	code := e.Code
	if code == rpc.CodeUnreachable {
		code = types.ErrTryAgainLater
	}
	return types.NewError(code, context+": "+e.Message, e.Field)
}

func configError(err error) error {
	return types.NewError(types.ErrInvalidNetworkConfig, err.Error(), "")
}

func isUnreachable(err error) bool {
	var e *rpc.Error
	return errors.As(err, &e) && e.Code == rpc.CodeUnreachable
}

func wrap(format string, args ...any) error {
	return types.NewError(types.ErrInternal, fmt.Sprintf(format, args...), "")
}
