package network

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/cni/pkg/types"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/ipamd/service"
	"github.com/underpool/underpool/tests/e2e"
	"github.com/underpool/underpool/tests/harness/kubelet"
)

// Issue 17, finding 8: a neighbour answering ARP for the whole subnet (here a netns with
// the subnet routed locally, so its kernel answers every probe, as a hostile macvlan
// neighbour would) made every ADD quarantine one more address until the pool was drained.
// Now its MAC is judged a spoofer after --quarantine-per-mac (3) answers: every ADD that
// meets it still fails with the conflict, but its addresses are released, the pool keeps
// serving a pod on a clean segment, and the pool gets a ConflictSpoofer event and ipamd
// underpool_ipamd_conflict_spoofers{pool}.
func TestANeighbourAnsweringForTheWholeSubnetDoesNotDrainThePool(t *testing.T) {
	const node = "spoofer-node"
	d, health := e2e.NodeWithIpamd(t, node, "--gc-interval=0", "--gc-min-age=0") // default quarantine limits
	t.Setenv(kubelet.IpamdSocketEnv, d.Options.Socket)                           // the plugins call this node's ipamd
	v4net, _, x := e2e.NextSubnet()
	b := strings.TrimSuffix(v4net, "0/24")
	pool := e2e.NewPool(t, v1.IPPoolSpec{Subnet: v4net, IPs: []string{b + "10-" + b + "29"}}) // 20 addresses
	spoofer := e2e.NewPeer(t, nil, fmt.Sprintf("10.250.%d.200/24", x), "")
	if _, err := spoofer.NS.Run("ip", "route", "add", "local", v4net, "dev", "lo"); err != nil {
		t.Fatal(err)
	}
	spooferMAC := e2e.MACOf(t, spoofer.NS.Path(), spoofer.End)
	ns := e2e.NewNamespace(t)

	spoofed := e2e.NetConf{Delegate: e2e.MacvlanOn(spoofer.Parent), IPv4Pools: []string{pool.Name}, Socket: d.Options.Socket}.Conflist(t)
	rt := e2e.RuntimeFor(e2e.NewPodNS(t), ns, "spoofed", "net1")
	for i := range 20 { // as many ADDs as the pool has addresses: before, the last found it drained
		_, err := e2e.Suite.CNI.Add(e2e.Ctx(t), spoofed, rt)
		var cniErr *types.Error
		if !e2e.AsCNIError(err, &cniErr) || cniErr.Code != types.ErrTryAgainLater || !strings.Contains(cniErr.Msg, "is already used by "+spooferMAC) {
			t.Fatalf("ADD %d on the spoofed segment: want code 11 naming %s, got %v", i, spooferMAC, err)
		}
	}
	st := e2e.SettledState(t, pool.Name)
	if len(st.Quarantined) != 3 || st.AllocatedIPCount != 0 {
		t.Fatalf("after 20 answers of one MAC: %d quarantined, %d allocated; want 3 (--quarantine-per-mac) and 0", len(st.Quarantined), st.AllocatedIPCount)
	}
	for _, q := range st.Quarantined {
		if q.MAC != spooferMAC {
			t.Fatalf("quarantined %s for %s, want only %s", q.IP, q.MAC, spooferMAC)
		}
	}

	clean := e2e.NewPeer(t, nil, fmt.Sprintf("10.250.%d.201/24", x), "")
	cleanConf := e2e.NetConf{Delegate: e2e.MacvlanOn(clean.Parent), IPv4Pools: []string{pool.Name}, Socket: d.Options.Socket}.Conflist(t)
	served := e2e.RuntimeFor(e2e.NewPodNS(t), ns, "clean", "net1")
	if _, err := e2e.Suite.CNI.Add(e2e.Ctx(t), cleanConf, served); err != nil {
		t.Fatalf("ADD on a clean segment from the pool the spoofer met: %v (the pool was drained)", err)
	}
	e2e.RequireInvariants(t, e2e.AttachmentsOf(served), pool.Name)

	e2e.WaitFor(t, "a ConflictSpoofer event naming "+spooferMAC, func() bool {
		for _, e := range e2e.EventsAbout(t, "IPPool", pool.Name, service.ReasonConflictSpoofer) {
			if strings.Contains(e.Message, spooferMAC+" answers for 4 addresses") {
				return true
			}
		}
		return false
	})
	e2e.Eventually(t, "ipamd's spoofer metrics", 30*time.Second, func() (bool, string) {
		m := e2e.Scrape(t, health)
		s, _ := m.Get("underpool_ipamd_conflict_spoofers", "pool", pool.Name)
		r, _ := m.Get("underpool_ipamd_quarantine_refused_total", "pool", pool.Name, "reason", service.RefusedSpoofer)
		// the gauge follows the pool's status: what the spoofer got quarantined before the bound
		q, _ := m.Get("underpool_pool_quarantined_addresses", "pool", pool.Name)
		want := float64(len(e2e.FreshState(t, pool.Name).Quarantined))
		return s == 1 && r == 17 && q == want && q > 0, fmt.Sprintf("conflict_spoofers = %v, quarantine_refused_total{spoofer} = %v (want 1 and 17), "+
			"quarantined_addresses = %v (want the pool's %v, more than 0)", s, r, q, want)
	})
	if err := e2e.Suite.CNI.Del(e2e.Ctx(t), cleanConf, served); err != nil {
		t.Fatalf("DEL: %v", err)
	}
	e2e.RequireNothingLeft(t, ns, pool.Name)
}
