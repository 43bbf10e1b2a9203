package chain

import "github.com/underpool/underpool/chain/ipamplugin"

// Both plugins answer the runtime with the same CNI error codes: the makers are the IPAM
// plugin's, named here as the meta-plugin's code calls them.
var (
	// invalidConfig is a network config the runtime must fix; retrying cannot help.
	invalidConfig = ipamplugin.InvalidConfig
	// tryAgainLater is a failure a retry of the same request may not meet.
	tryAgainLater = ipamplugin.TryAgainLater
	// internalError is any other failure, formatted like fmt.Errorf.
	internalError = ipamplugin.InternalError
)
