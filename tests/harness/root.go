package harness

import (
	"errors"
	"fmt"
	"os"
	"testing"
)

// RequireRoot skips the test unless it runs as root: namespaces, links and
// CNI plugins need CAP_SYS_ADMIN and CAP_NET_ADMIN.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("skipping: needs root (network namespaces, links and CNI plugins need CAP_SYS_ADMIN/CAP_NET_ADMIN); run with sudo")
	}
}

// CanRunEndToEnd says why this machine cannot run the end-to-end half (not root, or
// network namespaces cannot be made), or nil when it can. `make test` fails rather than
// passes without it: a green run must mean the end-to-end tests ran.
func CanRunEndToEnd() error {
	if os.Geteuid() != 0 {
		return errors.New("not root: network namespaces, links and CNI plugins need CAP_SYS_ADMIN/CAP_NET_ADMIN (run `make test` as root)")
	}
	probe, err := NewNetNS(UniqueName("probe"))
	if err != nil {
		return fmt.Errorf("cannot create a network namespace: %w", err)
	}
	return probe.Close()
}
