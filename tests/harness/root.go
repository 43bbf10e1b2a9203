package harness

import (
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
