package importer

import (
	"context"
	"net/netip"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/core/allocator"
)

// importPlan is everything checked and ready to write.
type importPlan struct {
	report    Report
	subnets   []*v1.Subnet
	reserved  []*v1.ReservedIP
	pools     []newPool            // to create, each with its allocation state
	marks     []poolMark           // existing pools: offsets to add to their state.allocated
	existing  map[string]types.UID // existing pools to import into: name -> UID
	endpoints []*v1.Endpoint
}

// newPool is a pool to create (carrying v1.ImportingAnnotation) and the offsets its
// PoolAllocation is to mark.
type newPool struct {
	pool      *v1.IPPool
	allocated allocator.RunSet
}

// poolMark is the offsets of an existing pool's subnet its PoolAllocation is to gain;
// importing says the pool still carries v1.ImportingAnnotation (an earlier import stopped
// before its state was written): the annotation goes once the state is written.
type poolMark struct {
	name      string
	prefix    netip.Prefix
	offs      []uint64
	importing bool
}

type podKey struct{ ns, name string }

// planner builds the plan one underpool kind at a time; each step reads the API and
// what the steps before it decided, and refuses the whole import on a conflict.
type planner struct {
	ctx context.Context
	c   client.Reader
	st  *peerState
	now time.Time
	p   *importPlan

	// set by ipPools: every IPPool there is, and the views of those to import
	existing []v1.IPPool
	byName   map[string]*v1.IPPool
	views    map[string]*allocator.PoolView

	// set by addresses: the live pods' addresses, per pod and per pool
	pods      map[podKey]*corev1.Pod
	gone      map[podKey]string // why a pod's addresses are skipped
	eps       map[podKey]*v1.Endpoint
	epOrder   []podKey
	epFrom    map[podKey]string
	allocated map[string]*allocator.RunSet
	seen      map[netip.Addr]string // address -> the pod it is kept for

	// set by endpoints: the pods whose existing Endpoint already holds their addresses
	unchangedEP map[podKey]bool

	// set by poolStatus when needed: "pool address" -> the Endpoint that records it
	holders map[string]string
}

// plan turns the peer's state into underpool objects and refuses conflicts.
func plan(ctx context.Context, c client.Reader, st *peerState, now time.Time) (*importPlan, error) {
	pl := &planner{ctx: ctx, c: c, st: st, now: now, p: &importPlan{existing: map[string]types.UID{}}}
	pl.p.report.Skipped = append(pl.p.report.Skipped, st.skipped...)
	pl.p.report.Notes = append(pl.p.report.Notes, st.notes...)
	for _, step := range []func() error{pl.subnets, pl.reservedIPs, pl.ipPools, pl.addresses, pl.endpoints, pl.poolStatus} {
		if err := step(); err != nil {
			return nil, err
		}
	}
	pl.p.report.inWriteOrder()
	return pl.p, nil
}
