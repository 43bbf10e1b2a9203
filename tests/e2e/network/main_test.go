// Package network proves what lands in a pod's network namespace and on its segment:
// delegates (macvlan, ipvlan, SR-IOV where the kernel has them), routes and per-NIC tables,
// IPv6 routing, host connectivity through the host veth, the gateway and IP-conflict probes
// (late answers included), and the quarantine of conflicting addresses, a neighbour that
// answers for the whole subnet among them.
package network

import (
	"testing"

	"github.com/underpool/underpool/tests/e2e"
)

// TestMain starts the package's control plane, controller and node ipamd (e2e.Main), and
// fails, not skips, where the end-to-end half cannot run.
func TestMain(m *testing.M) { e2e.Main(m) }
