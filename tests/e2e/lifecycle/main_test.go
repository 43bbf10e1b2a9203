// Package lifecycle proves whole-cluster behaviour: simulated nodes, each with its own
// ipamd and a kubelet stand-in (tests/harness/kubelet), under the real controller manager
// and scheduler (cluster_test.go); Deployments, StatefulSets, drains, dead kubelets,
// namespace deletion, application pools, bad input and racing DELs and late ADDs. Also the
// multi-node tests without a kubelet: two ipamds on one pool, recycling of gone pods'
// addresses, an ipamd that watches only its own node. After every phase a test checks the
// invariants (e2e.RequireInvariants).
package lifecycle

import (
	"testing"

	"github.com/underpool/underpool/tests/e2e"
)

// TestMain starts the package's control plane, controller and node ipamd (e2e.Main), and
// fails, not skips, where the end-to-end half cannot run.
func TestMain(m *testing.M) { e2e.Main(m) }
