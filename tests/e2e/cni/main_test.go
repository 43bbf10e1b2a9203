// Package cni proves the CNI verbs end to end: ADD, DEL, CHECK, STATUS and GC through the
// underpool meta-plugin and the underpool-ipam plugin as a runtime drives them (libcni),
// through multus with a real NetworkAttachmentDefinition, 64 ADDs at once, every file in
// conflist-examples/, and ipamd's socket itself (bad requests, restarts, an ipamd that is
// down).
package cni

import (
	"testing"

	"github.com/underpool/underpool/tests/e2e"
)

// TestMain starts the package's control plane, controller and node ipamd (e2e.Main), and
// fails, not skips, where the end-to-end half cannot run.
func TestMain(m *testing.M) { e2e.Main(m) }
