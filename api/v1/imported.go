package v1

import "strings"

// UnknownSandboxPrefix begins the ContainerID of an attachment that `kubectl underpool
// import` recorded for a live pod whose peer IPAM keeps no sandbox ID (Spiderpool 0.8 and
// later record only the pod's UID); the pod UID follows. No runtime ever sends such an ID,
// so ipamd matches the attachment by pod UID and interface instead: a DEL of that pod's
// interface releases it once the pod is ending, and the next ADD of a running pod (a new
// sandbox) takes it over (ipamd/service, Release and takeOver).
const UnknownSandboxPrefix = "imported-unknown-sandbox-"

// legacyUnknownSandboxPrefix is what imports before UnknownSandboxPrefix wrote, for
// Spiderpool only; such Endpoints are matched the same way.
const legacyUnknownSandboxPrefix = "spiderpool-import-"

// UnknownSandboxID is the ContainerID an import records for pod UID uid when the peer
// kept no sandbox ID.
func UnknownSandboxID(uid string) string { return UnknownSandboxPrefix + uid }

// IsUnknownSandbox reports whether containerID is one an import made up because the peer
// kept no sandbox ID.
func IsUnknownSandbox(containerID string) bool {
	return strings.HasPrefix(containerID, UnknownSandboxPrefix) || strings.HasPrefix(containerID, legacyUnknownSandboxPrefix)
}
