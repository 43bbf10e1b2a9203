package controller

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/core/allocator"
)

// +kubebuilder:rbac:groups=underpool.io,resources=ippools/status,verbs=update

// Reasons of the pool conditions.
const (
	ReasonAddressesFree   = "AddressesFree"
	ReasonNoFreeAddress   = "NoFreeAddress"
	ReasonNotCounted      = "PoolInvalid"
	ReasonSharesAddresses = "SharesAddresses"
	ReasonNoOverlap       = "NoOverlap"
	ReasonInvalidSpec     = "InvalidSpec"
	ReasonCorruptStatus   = "CorruptStatus"
	ReasonValid           = "Valid"
)

// poolConditions keeps every pool's Exhausted, Overlapping and Invalid conditions true to
// what the controller reads, level-triggered: one key, every pool recomputed, as overlaps
// and reservations make any pool's change matter to the others. It also mirrors the
// counts of each pool's PoolAllocation onto the pool's status, where users read them.
//
// It is the one writer of IPPool status, by an update guarded by resourceVersion; a
// conflict needs no retry of its own: the change that caused it is an event that
// reconciles again. Every IPPool status write is an event on every node (each ipamd
// watches the pools), so a pool's status is written at most once per interval
// (countsMirror): what a node receives then does not grow with the allocation rate.
type poolConditions struct {
	c      client.Client
	counts countsMirror
}

func (r *poolConditions) Reconcile(ctx context.Context, _ reconcile.Request) (reconcile.Result, error) {
	var pools v1.IPPoolList
	if err := r.c.List(ctx, &pools); err != nil {
		return reconcile.Result{}, err
	}
	var reserved v1.ReservedIPList
	if err := r.c.List(ctx, &reserved); err != nil {
		return reconcile.Result{}, err
	}
	states, err := readStates(ctx, r.c, pools.Items)
	if err != nil {
		return reconcile.Result{}, err
	}
	now := r.counts.now()
	want, changes := conditionsOf(pools.Items, states, reserved.Items, now)
	var errs []error
	var wait time.Duration
	for i := range pools.Items {
		pool := &pools.Items[i]
		held := states[pool.Name]
		state, outside := shownState(pool, held), heldOutsideSpec(pool, &held)
		stale := migrated(ctx, r.c, pool) || allocationUID(ctx, r.c, pool) != pool.Status.AllocationUID
		if conditionsHold(pool, want[pool.Name]) && pool.Status.CountsEqual(&state) && pool.Status.HeldOutsideSpec == outside && !stale {
			continue
		}
		// what a pool holds outside its spec is what other pools must not hand out: it
		// goes out at once (it changes only when a spec is narrowed past the webhook, or
		// as those addresses are released)
		if d := r.counts.wait(pool.UID, now); d > 0 && pool.Status.HeldOutsideSpec == outside && !stale {
			wait = minPositive(wait, d) // written a moment ago: the last state goes out when the interval ends
			continue
		}
		if err := r.write(ctx, pool, want[pool.Name], &state, outside); err != nil {
			errs = append(errs, err)
			continue
		}
		r.counts.wrote(pool.UID, now)
	}
	r.counts.keep(pools.Items)
	result := reconcile.Result{RequeueAfter: wait}
	if !changes.IsZero() {
		// a quarantine ends: the pool may have room again
		result.RequeueAfter = minPositive(result.RequeueAfter, max(changes.Sub(now), time.Second))
	}
	return result, errors.Join(errs...)
}

// write updates a pool's conditions, counts and what it holds outside its spec, guarded
// by the resourceVersion read. A whole-status update, not a merge patch: a count that
// becomes 0 on a status never written before would be no difference to a patch (the
// fields are not omitempty) and would stay unset, an empty column in kubectl get ippools.
// The controller is the status' only writer.
func (r *poolConditions) write(ctx context.Context, pool *v1.IPPool, want []metav1.Condition, state *v1.AllocationState, outside string) error {
	for _, c := range want {
		c.ObservedGeneration = pool.Generation
		meta.SetStatusCondition(&pool.Status.Conditions, c)
	}
	pool.Status.ShowCounts(state)
	pool.Status.HeldOutsideSpec = outside
	pool.Status.AllocationUID = allocationUID(ctx, r.c, pool)
	if migrated(ctx, r.c, pool) {
		pool.Status.LegacyAllocated, pool.Status.LegacyQuarantined = "", nil
	}
	if err := r.c.Status().Update(ctx, pool); err != nil && !apierrors.IsConflict(err) && !apierrors.IsNotFound(err) {
		return fmt.Errorf("IPPool %s status: %w", pool.Name, err)
	}
	return nil
}

// minPositive is the smaller of two durations, a zero one counting as none.
func minPositive(a, b time.Duration) time.Duration {
	if a <= 0 || (b > 0 && b < a) {
		return b
	}
	return a
}

// conditionsHold reports whether the pool already shows the wanted conditions (the
// transition times aside, which meta.SetStatusCondition keeps).
func conditionsHold(pool *v1.IPPool, want []metav1.Condition) bool {
	for _, w := range want {
		c := meta.FindStatusCondition(pool.Status.Conditions, w.Type)
		if c == nil || c.Status != w.Status || c.Reason != w.Reason || c.Message != w.Message || c.ObservedGeneration != pool.Generation {
			return false
		}
	}
	return true
}

// conditionsOf returns the conditions each pool should show, and the earliest moment they
// may change by time alone (a quarantine ending; zero: none).
func conditionsOf(pools []v1.IPPool, states poolStates, reserved []v1.ReservedIP, now time.Time) (map[string][]metav1.Condition, time.Time) {
	overlaps := map[string][]string{}
	for _, o := range overlapsOf(pools) {
		overlaps[o.a.Name] = append(overlaps[o.a.Name], fmt.Sprintf("IPPool %s, the first %s", o.b.Name, o.first))
		overlaps[o.b.Name] = append(overlaps[o.b.Name], fmt.Sprintf("IPPool %s, the first %s", o.a.Name, o.first))
	}
	held := heldFootprints(pools, states)
	var changes time.Time
	out := make(map[string][]metav1.Condition, len(pools))
	for i := range pools {
		pool := &pools[i]
		state := states[pool.Name]
		invalid, exhausted := validity(pool, &state), metav1.Condition{Type: v1.PoolExhausted, Status: metav1.ConditionUnknown,
			Reason: ReasonNotCounted, Message: "the pool is invalid, so its free addresses cannot be counted (see the Invalid condition)"}
		if invalid.Status == metav1.ConditionFalse {
			var until time.Time
			exhausted, until = exhaustion(pool, &state, i, held, reserved, now)
			if !until.IsZero() && (changes.IsZero() || until.Before(changes)) {
				changes = until
			}
		}
		overlapping := metav1.Condition{Type: v1.PoolOverlapping, Status: metav1.ConditionFalse, Reason: ReasonNoOverlap,
			Message: "the pool shares no address with another IPPool"}
		if others := overlaps[pool.Name]; len(others) > 0 {
			slices.Sort(others)
			overlapping = metav1.Condition{Type: v1.PoolOverlapping, Status: metav1.ConditionTrue, Reason: ReasonSharesAddresses,
				Message: "shares addresses with " + strings.Join(others, "; ") +
					": ipamd hands out none of them from either pool until they are separated (narrow spec.ips or add them to spec.excludeIPs of one pool)"}
		}
		out[pool.Name] = []metav1.Condition{exhausted, overlapping, invalid}
	}
	return out, changes
}

// validity is the Invalid condition: ipamd hands nothing out of a pool whose spec does not
// parse or whose PoolAllocation's state.allocated is corrupt (the store refuses both).
func validity(pool *v1.IPPool, state *v1.AllocationState) metav1.Condition {
	view, err := allocator.NewPool(pool.Name, &pool.Spec)
	if err != nil {
		return metav1.Condition{Type: v1.PoolInvalid, Status: metav1.ConditionTrue, Reason: ReasonInvalidSpec,
			Message: fmt.Sprintf("%v: ipamd hands out nothing from this pool until the spec is fixed", err)}
	}
	if _, err := view.ParseAllocated(state.Allocated); err != nil {
		return metav1.Condition{Type: v1.PoolInvalid, Status: metav1.ConditionTrue, Reason: ReasonCorruptStatus,
			Message: corruptStatusMessage(pool.Name, err)}
	}
	return metav1.Condition{Type: v1.PoolInvalid, Status: metav1.ConditionFalse, Reason: ReasonValid,
		Message: "spec and state.allocated parse"}
}

// exhaustion is the Exhausted condition of a valid pool: True when every usable address is
// allocated, quarantined, reserved or shared with another pool, as ipamd would block them
// at a commit (store/overlap.go); also when the quarantine next ends, if one does.
func exhaustion(pool *v1.IPPool, state *v1.AllocationState, index int, held []heldFootprint, reserved []v1.ReservedIP, now time.Time) (metav1.Condition, time.Time) {
	view, _ := allocator.NewPool(pool.Name, &pool.Spec)
	allocated, _ := view.ParseAllocated(state.Allocated)
	var quarantined allocator.RunSet
	var until time.Time
	for _, q := range state.Quarantined {
		addr, err := netip.ParseAddr(q.IP)
		if err != nil || !q.Until.Time.After(now) {
			continue
		}
		if o, ok := view.Offset(addr); ok {
			quarantined.Add(o)
			if until.IsZero() || q.Until.Time.Before(until) {
				until = q.Until.Time
			}
		}
	}
	var blocked allocator.RunSet
	for _, r := range reserved {
		// a bad entry reserves what it clearly names, as ipamd reads it (store.ReservedIPs)
		set, _ := allocator.ClipReservations(view.Prefix, r.Spec.IPs)
		for _, run := range set.Runs() {
			blocked.AddRun(run)
		}
	}
	for j, other := range held {
		if j != index && other.ok && other.fp.Prefix.Overlaps(view.Prefix) {
			for _, run := range other.fp.In(view.Prefix).Runs() {
				blocked.AddRun(run)
			}
		}
	}
	usable := view.Usable
	notAllocated := usable.Subtract(allocated)
	notQuarantined := notAllocated.Subtract(quarantined)
	free := notQuarantined.Subtract(blocked)
	if !free.Empty() {
		return metav1.Condition{Type: v1.PoolExhausted, Status: metav1.ConditionFalse, Reason: ReasonAddressesFree,
			Message: "the pool has addresses to hand out"}, until
	}
	n, a := usable.Count(), notAllocated.Count()
	return metav1.Condition{Type: v1.PoolExhausted, Status: metav1.ConditionTrue, Reason: ReasonNoFreeAddress,
		Message: fmt.Sprintf("every one of the %d usable addresses is taken: %d allocated, %d quarantined, %d reserved or shared with another pool; "+
			"allocations from this pool fail until addresses are released or the pool grows", n, n-a, a-notQuarantined.Count(), notQuarantined.Count()),
	}, until
}

// heldFootprint is what a pool keeps from the others: its spec footprint plus what its
// state holds (a corrupt state, offsets outside its subnet included: its whole subnet), as
// ipamd computes it (store/overlap.go).
type heldFootprint struct {
	fp allocator.Footprint
	ok bool
}

func heldFootprints(pools []v1.IPPool, states poolStates) []heldFootprint {
	out := make([]heldFootprint, len(pools))
	for i := range pools {
		fp, ok := allocator.FootprintOf(pools[i].Name, &pools[i].Spec)
		if allocated := states[pools[i].Name].Allocated; ok && !fp.All && allocated != "" {
			if set, err := allocator.ParseAllocated(fp.Prefix, allocated); err != nil {
				fp = allocator.Footprint{Prefix: fp.Prefix, All: true}
			} else {
				fp.Set = fp.Set.Clone()
				for _, run := range set.Runs() {
					fp.Set.AddRun(run)
				}
			}
		}
		out[i] = heldFootprint{fp: fp, ok: ok}
	}
	return out
}

// corruptStatusMessage is what the Invalid condition says of a state.allocated that does
// not parse or names offsets outside the pool: the field, and the two ways out.
func corruptStatusMessage(pool string, err error) string {
	return fmt.Sprintf("state.allocated of PoolAllocation %s is corrupt (%v): ipamd hands out nothing from this pool, and the controller neither "+
		"counts, carves nor sweeps it, until it is repaired: write back the offsets its Endpoints hold "+
		"(kubectl edit poolallocation %s; offsets count from the subnet's first address), "+
		"or set it to \"\" once no pod uses the pool", pool, err, pool)
}
