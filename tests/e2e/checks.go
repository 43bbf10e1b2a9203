package e2e

// The invariant checks on what the API holds, which every end-to-end test runs through
// RequireInvariants and both halves of the kernel tests run (tests/kernel/guest inside the
// VM after its ADDs and DELs, tests/kernel once the VM is gone). They return what is
// wrong, as sentences, instead of failing a test, so each caller can report it its own way.

import (
	"context"
	"fmt"
	"net/netip"
	"sort"

	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/core/allocator"
)

// HeldTwice names every address two attachments hold, across all the Endpoints given.
func HeldTwice(eps []v1.Endpoint) []string {
	var problems []string
	holder := map[string]string{}
	for _, ep := range eps {
		for _, itf := range ep.Status.Interfaces {
			for _, ip := range itf.IPs {
				who := fmt.Sprintf("%s/%s %s %.12s", ep.Namespace, ep.Name, itf.Interface, itf.ContainerID)
				if prev, dup := holder[ip.Address]; dup {
					problems = append(problems, fmt.Sprintf("%s held by %s and by %s", ip.Address, prev, who))
				}
				holder[ip.Address] = who
			}
		}
	}
	return problems
}

// Holds reports whether the Endpoint holds addr (with its prefix) for the live attachment of
// containerID.
func Holds(ep *v1.Endpoint, containerID, addr string) bool {
	for _, itf := range ep.Status.Interfaces {
		for _, ip := range itf.IPs {
			if itf.ContainerID == containerID && itf.Detached == nil && ip.Address == addr {
				return true
			}
		}
	}
	return false
}

// PoolMismatch compares a pool's allocated set (its allocation state, read from the API)
// with the union of what the Endpoints hold in it; "" when they agree.
func PoolMismatch(pool *v1.IPPool, st *v1.AllocationState, eps []v1.Endpoint) (string, error) {
	view, err := allocator.NewPool(pool.Name, &pool.Spec)
	if err != nil {
		return "", fmt.Errorf("pool %s: %w", pool.Name, err)
	}
	allocated, err := allocator.ParseRunSet(st.Allocated)
	if err != nil {
		return "", fmt.Errorf("pool %s state.allocated: %w", pool.Name, err)
	}
	var held allocator.RunSet
	for _, ep := range eps {
		for _, itf := range ep.Status.Interfaces {
			for _, ip := range itf.IPs {
				if ip.Pool != pool.Name {
					continue
				}
				p, err := netip.ParsePrefix(ip.Address)
				if err != nil {
					return "", fmt.Errorf("the Endpoint %s/%s holds %q, not an address with its prefix", ep.Namespace, ep.Name, ip.Address)
				}
				if o, ok := view.Offset(p.Addr()); ok {
					held.Add(o)
				}
			}
		}
	}
	if allocated.String() != held.String() {
		return fmt.Sprintf("pool %s allocated %q, Endpoints hold %q", pool.Name, allocated.String(), held.String()), nil
	}
	return "", nil
}

// CountsMismatch compares the counts a pool's status shows (the controller's copy, at
// most --counts-interval behind) with its allocation state's; "" when they agree.
func CountsMismatch(pool *v1.IPPool, st v1.AllocationState) string {
	view, err := allocator.NewPool(pool.Name, &pool.Spec)
	if err != nil {
		return fmt.Sprintf("pool %s: %v", pool.Name, err)
	}
	// the status shows the state's counts with the total of the spec as it is now (a pool
	// nothing was allocated from has no state; a resized one's state keeps its old total
	// until its next write)
	want := st
	want.SetCounts(view.TotalCount(), st.AllocatedIPCount)
	if !pool.Status.CountsEqual(&want) {
		return fmt.Sprintf("pool %s status shows %d of %d allocated, %d free, %d quarantined; its state and spec give %d of %d, %d, %d",
			pool.Name, pool.Status.AllocatedIPCount, pool.Status.TotalIPCount, pool.Status.FreeIPCount, pool.Status.QuarantinedIPCount,
			want.AllocatedIPCount, want.TotalIPCount, want.FreeIPCount, len(want.Quarantined))
	}
	return ""
}

// CheckCluster checks the whole cluster as the host sees it once every test is over: no address
// held twice, every pool's status equal to its Endpoints, and, when settled, nothing held at
// all (every test ended with its DELs). It also returns the pools it looked at.
func CheckCluster(ctx context.Context, c client.Client, settled bool) (problems, pools []string, err error) {
	var eps v1.EndpointList
	if err := c.List(ctx, &eps); err != nil {
		return nil, nil, fmt.Errorf("listing Endpoints: %w", err)
	}
	var ipPools v1.IPPoolList
	if err := c.List(ctx, &ipPools); err != nil {
		return nil, nil, fmt.Errorf("listing IPPools: %w", err)
	}
	var allocs v1.PoolAllocationList
	if err := c.List(ctx, &allocs); err != nil {
		return nil, nil, fmt.Errorf("listing PoolAllocations: %w", err)
	}
	byName := map[string]*v1.PoolAllocation{}
	for i := range allocs.Items {
		byName[allocs.Items[i].Name] = &allocs.Items[i]
	}
	problems = HeldTwice(eps.Items)
	for i := range ipPools.Items {
		p := &ipPools.Items[i]
		pools = append(pools, p.Name)
		st := v1.StateOf(p, byName[p.Name])
		mismatch, err := PoolMismatch(p, &st, eps.Items)
		if err != nil {
			return nil, nil, err
		}
		if mismatch != "" {
			problems = append(problems, mismatch)
		}
		if counts := CountsMismatch(p, st); counts != "" {
			problems = append(problems, counts)
		}
		if settled && (st.AllocatedIPCount != 0 || st.Allocated != "") {
			problems = append(problems, fmt.Sprintf("pool %s still holds %d addresses (%q)", p.Name, st.AllocatedIPCount, st.Allocated))
		}
	}
	if settled {
		for _, ep := range eps.Items {
			problems = append(problems, fmt.Sprintf("Endpoint %s/%s is left with %d attachments", ep.Namespace, ep.Name, len(ep.Status.Interfaces)))
		}
	}
	sort.Strings(pools)
	return problems, pools, nil
}
