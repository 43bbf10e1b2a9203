package guest

import (
	"testing"

	"github.com/underpool/underpool/tests/e2e"
	"github.com/underpool/underpool/tests/harness"
)

// requireInvariants is e2e.RequireInvariants (no address held twice, every address on a
// live attachment held by its record, each pool's status equal to its Endpoints) over the
// runtimes' attachments on this VM's node.
func requireInvariants(t *testing.T, live []harness.Runtime, pools ...string) {
	t.Helper()
	atts := e2e.AttachmentsOf(live...)
	for i := range atts {
		atts[i].Where = suite.node
	}
	e2e.RequireInvariants(t, atts, pools...)
}
