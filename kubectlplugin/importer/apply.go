package importer

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/core/allocator"
)

// apply writes the plan: Subnets, ReservedIPs, pools (each: the pool refusing
// allocations, its PoolAllocation, then the pool opened), the marks on existing pools,
// then Endpoints: a pool marks an address before an Endpoint records it, as ipamd writes
// them, so that no failure leaves an address held but free to hand out. Each object is
// created once; a re-run after a failure finds what was created and finishes it, and
// the error names what was written.
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
	uids := maps.Clone(p.existing)
	for _, np := range p.pools {
		if err := createPool(ctx, c, np, &done); err != nil {
			return done.failed(err)
		}
		uids[np.pool.Name] = np.pool.UID
	}
	for _, m := range p.marks {
		uid, err := markPool(ctx, c, m, &done)
		if err != nil {
			return done.failed(err)
		}
		uids[m.name] = uid
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

// createPool creates the pool carrying v1.ImportingAnnotation (ipamd hands nothing out of
// it), writes its PoolAllocation, then removes the annotation. A failure in between
// leaves the pool refusing allocations: the re-run finds it and finishes it (markPool).
func createPool(ctx context.Context, c client.Client, np newPool, done *written) error {
	pool := np.pool
	if err := c.Create(ctx, pool); err != nil {
		return fmt.Errorf("creating IPPool %s: %w", pool.Name, err)
	}
	if _, err := addAllocated(ctx, c, pool.Name, np.allocated); err != nil {
		done.add(fmt.Sprintf("IPPool %s (without its allocation state: it hands out nothing until the import is run again)", pool.Name))
		return fmt.Errorf("writing PoolAllocation %s (allocated %s): %w", pool.Name, np.allocated.String(), err)
	}
	if err := openPool(ctx, c, pool.Name); err != nil {
		done.add(fmt.Sprintf("IPPool %s and its PoolAllocation (allocated %s; still marked importing: it hands out nothing until the import is run again)", pool.Name, np.allocated.String()))
		return err
	}
	done.add(fmt.Sprintf("IPPool %s (allocated %s)", pool.Name, np.allocated.String()))
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

// markPool adds the offsets to an existing pool's allocation state, opens it when an
// earlier import left it refusing allocations, and returns the pool's UID.
func markPool(ctx context.Context, c client.Client, m poolMark, done *written) (types.UID, error) {
	add := allocator.NewRunSet()
	for _, o := range m.offs {
		add.Add(o)
	}
	uid, err := addAllocated(ctx, c, m.name, add)
	if err != nil {
		return "", fmt.Errorf("marking addresses in PoolAllocation %s: %w", m.name, err)
	}
	if m.importing {
		if err := openPool(ctx, c, m.name); err != nil {
			done.add(fmt.Sprintf("PoolAllocation %s (gained %d)", m.name, len(m.offs)))
			return "", err
		}
	}
	done.add(fmt.Sprintf("IPPool %s (state.allocated gained %d)", m.name, len(m.offs)))
	return uid, nil
}

// openPool removes v1.ImportingAnnotation from the pool, once its state is written: ipamd
// hands out its addresses from then on. A merge patch that removes one key: nothing else
// of the pool is read or written, so it conflicts with no other writer.
func openPool(ctx context.Context, c client.Client, name string) error {
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]any{v1.ImportingAnnotation: nil}}})
	if err != nil {
		return err
	}
	pool := &v1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if err := c.Patch(ctx, pool, client.RawPatch(types.MergePatchType, patch)); err != nil {
		return fmt.Errorf("removing annotation %s from IPPool %s: %w", v1.ImportingAnnotation, name, err)
	}
	return nil
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
