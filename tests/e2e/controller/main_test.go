// Package controller proves the cluster-wide controller on a real apiserver: its webhook
// (validation, a CA shared by replicas), pool conditions, Subnet status, ReservedIPs, pool
// selection as ipamd applies it, the metrics ipamd and the controller serve after real
// traffic, and the deploy/ manifests applied server-side.
package controller

import (
	"testing"

	"github.com/underpool/underpool/tests/e2e"
)

// TestMain starts the package's control plane, controller and node ipamd (e2e.Main), and
// fails, not skips, where the end-to-end half cannot run.
func TestMain(m *testing.M) { e2e.Main(m) }
