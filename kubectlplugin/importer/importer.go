// Package importer moves a cluster's addresses over from a peer IPAM into underpool. It
// owns, for `kubectl underpool import`:
//   - reading the peer's objects as unstructured, so underpool does not depend on the
//     peer's Go module: Spiderpool's SpiderSubnet, SpiderIPPool, SpiderEndpoint and
//     SpiderReservedIP (spider_*.go), whereabouts' IPPool and
//     OverlappingRangeIPReservation, with the gateway and routes of the
//     NetworkAttachmentDefinitions that use each range (whereabouts*.go), each into one
//     peer-neutral state (peer.go), keeping the sandbox (container) ID wherever the peer
//     records one;
//   - planning the underpool Subnets, ReservedIPs, IPPools (with their PoolAllocations'
//     state.allocated) and Endpoints that keep every live pod's address, one file per underpool kind
//     (plan_*.go): everything is checked before anything is written, and any conflict
//     with an existing underpool object refuses the whole import;
//   - applying the plan (apply.go), in an order a re-run after a failure completes.
//
// It never changes or deletes the peer's objects, and never frees an address. It reads
// and writes only through a controller-runtime client: no ipamd or controller code.
package importer

import (
	"context"
	"fmt"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/client"
)

// The peers an import reads from.
const (
	Spiderpool  = "spiderpool"
	Whereabouts = "whereabouts"
)

// Sources are the peers Run accepts, for the command's completion.
var Sources = []string{Spiderpool, Whereabouts}

// Options say what to import and how.
type Options struct {
	Source string // Spiderpool or Whereabouts
	// Prefix goes before the names of the created Subnets, IPPools and ReservedIPs.
	Prefix string
	// DryRun plans and reports, and writes nothing.
	DryRun bool
	// Now stamps the imported attachments' creation time; zero means time.Now().
	Now time.Time
}

// Run reads the peer's objects, plans the underpool objects and, unless DryRun, writes
// them. Nothing is written when the plan fails; when a write fails, the error names what
// was already written (a re-run finds it and leaves it alone).
func Run(ctx context.Context, c client.Client, o Options) (*Report, error) {
	if ctx == nil {
		ctx = context.Background()
	}
	st, err := read(ctx, c, o.Source, o.Prefix)
	if err != nil {
		return nil, err
	}
	now := o.Now
	if now.IsZero() {
		now = time.Now()
	}
	p, err := plan(ctx, c, st, now)
	if err != nil {
		return nil, err
	}
	p.report.Source, p.report.DryRun = o.Source, o.DryRun
	if o.DryRun {
		return &p.report, nil
	}
	if err := p.apply(ctx, c); err != nil {
		return nil, err
	}
	return &p.report, nil
}

func read(ctx context.Context, c client.Client, source, prefix string) (*peerState, error) {
	switch source {
	case Spiderpool:
		return readSpiderpool(ctx, c, prefix)
	case Whereabouts:
		return readWhereabouts(ctx, c, prefix)
	}
	return nil, fmt.Errorf("unknown source %q: use `kubectl underpool import spiderpool` or `kubectl underpool import whereabouts`", source)
}
