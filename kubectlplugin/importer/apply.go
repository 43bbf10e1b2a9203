package importer

import (
	"context"
	"fmt"
	"maps"
	"strings"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/core/allocator"
)

// apply writes the plan: Subnets, ReservedIPs, pools (spec, then status), the marks on
// existing pools, then Endpoints: a pool marks an address before an Endpoint records it,
// as ipamd writes them, so that no failure leaves an address held but free to hand out.
// Each object is created once; a re-run after a failure finds what was created and
// leaves it alone, and the error names what was written.
func (p *importPlan) apply(ctx context.Context, c client.Client) error {
	var done written
	for _, s := range p.subnets {
		if err := c.Create(ctx, s); err != nil {
			return done.failed(fmt.Errorf("creating Subnet %s: %w", s.Name, err))
		}
		done.add("Subnet " + s.Name)
	}
	for _, r := range p.reserved {
		if err := c.Create(ctx, r); err != nil {
			return done.failed(fmt.Errorf("creating ReservedIP %s: %w", r.Name, err))
		}
		done.add("ReservedIP " + r.Name)
	}
	for _, pool := range p.pools {
		if err := createPool(ctx, c, pool, &done); err != nil {
			return done.failed(err)
		}
	}
	uids := maps.Clone(p.existing)
	for _, pool := range p.pools {
		uids[pool.Name] = pool.UID
	}
	for _, m := range p.marks {
		uid, err := markPool(ctx, c, m)
		if err != nil {
			return done.failed(err)
		}
		uids[m.name] = uid
		done.add(fmt.Sprintf("IPPool %s (status.allocated gained %d)", m.name, len(m.offs)))
	}
	for _, ep := range p.endpoints {
		withPoolUIDs(ep, uids)
		if err := c.Create(ctx, ep); err != nil {
			return done.failed(fmt.Errorf("creating Endpoint %s/%s: %w", ep.Namespace, ep.Name, err))
		}
		done.add("Endpoint " + ep.Namespace + "/" + ep.Name)
	}
	return nil
}

// createPool creates the pool, then writes its status (the status subresource ignores
// a create's status).
func createPool(ctx context.Context, c client.Client, pool *v1.IPPool, done *written) error {
	status := pool.Status
	pool.Status = v1.IPPoolStatus{} // what the API makes of it anyway
	if err := c.Create(ctx, pool); err != nil {
		return fmt.Errorf("creating IPPool %s: %w", pool.Name, err)
	}
	view, err := allocator.NewPool(pool.Name, &pool.Spec) // the plan parsed it: no error
	if err == nil {
		var want allocator.RunSet
		if want, err = view.ParseAllocated(status.Allocated); err == nil {
			_, err = addAllocated(ctx, c, pool.Name, want)
		}
	}
	if err != nil {
		done.add(fmt.Sprintf("IPPool %s (without its status.allocated: run the import again before pods use it)", pool.Name))
		return fmt.Errorf("writing IPPool %s status (allocated %s): %w", pool.Name, status.Allocated, err)
	}
	done.add(fmt.Sprintf("IPPool %s (status.allocated %s)", pool.Name, status.Allocated))
	return nil
}

// withPoolUIDs names, on each address, the pool incarnation that marks it: a release then
// frees it only in that pool, never in one deleted and made again under the same name
// (docs/design.md, the release protocol).
func withPoolUIDs(ep *v1.Endpoint, uids map[string]types.UID) {
	for i := range ep.Status.Interfaces {
		for j := range ep.Status.Interfaces[i].IPs {
			ip := &ep.Status.Interfaces[i].IPs[j]
			ip.PoolUID = string(uids[ip.Pool])
		}
	}
}

// markPool adds the offsets to an existing pool's status.allocated and returns the pool's
// UID.
func markPool(ctx context.Context, c client.Client, m poolMark) (types.UID, error) {
	add := allocator.NewRunSet()
	for _, o := range m.offs {
		add.Add(o)
	}
	uid, err := addAllocated(ctx, c, m.name, add)
	if err != nil {
		return "", fmt.Errorf("marking addresses in IPPool %s: %w", m.name, err)
	}
	return uid, nil
}

// addAllocated adds the offsets of add to the pool's status.allocated, on fresh reads
// until no other writer conflicts: the controller writes a new pool's status too (its
// conditions), and ipamd an existing one's. An offset the pool marks by then was handed
// out since the plan was made, to a pod the peer knows nothing of: it is refused, since
// both pods would then hold it.
func addAllocated(ctx context.Context, c client.Client, name string, add allocator.RunSet) (types.UID, error) {
	var uid types.UID
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		pool := &v1.IPPool{}
		if err := c.Get(ctx, client.ObjectKey{Name: name}, pool); err != nil {
			return err
		}
		view, err := allocator.NewPool(pool.Name, &pool.Spec)
		if err != nil {
			return fmt.Errorf("its spec no longer parses: %w", err)
		}
		set, err := view.ParseAllocated(pool.Status.Allocated)
		if err != nil {
			return fmt.Errorf("status.allocated %q does not parse: %w: fix or delete the pool", pool.Status.Allocated, err)
		}
		if shared := add.Subtract(add.Subtract(set)); !shared.Empty() {
			return fmt.Errorf("%s was handed out since the import planned (the pool marks it allocated now): stop pods from using the pool during the import, then run it again",
				view.Addr(shared.Runs()[0].Lo))
		}
		for _, r := range add.Runs() {
			set.AddRun(r)
		}
		pool.Status.Allocated, pool.Status.AllocatedIPCount, pool.Status.TotalIPCount = set.String(), int64(set.Count()), view.TotalCount()
		uid = pool.UID
		return c.Status().Update(ctx, pool)
	})
	return uid, err
}

// written is what apply wrote so far, for the error of a write that fails.
type written []string

func (w *written) add(what string) { *w = append(*w, what) }

// failed says what was written before err: a half-done import is finished by a re-run.
func (w written) failed(err error) error {
	if len(w) == 0 {
		return fmt.Errorf("%w: nothing was written", err)
	}
	const most = 10
	list := strings.Join(w[:min(len(w), most)], ", ")
	if len(w) > most {
		list += fmt.Sprintf(" and %d more", len(w)-most)
	}
	return fmt.Errorf("%w: already written: %s; run the import again to finish", err, list)
}
