package controller

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/core/allocator"
	"github.com/underpool/underpool/core/apppool"
	"github.com/underpool/underpool/ipamd/store"
)

// poolWant is one pool a workload asks for: an interface ("" for every one) and family,
// the Subnets named for it in order, and its size.
type poolWant struct {
	ifName  string
	family  v1.IPFamily
	subnets []string
	size    int
	reclaim bool
}

// stuckInSubnet says a pool cannot grow in the Subnet it was carved from. It stays there:
// moving it to the next Subnet would change the addresses of a live workload's pods.
type stuckInSubnet struct {
	pool string
	err  *apppool.NoRoomError
}

func (e *stuckInSubnet) Error() string {
	return fmt.Sprintf("IPPool %s cannot grow: %v; it stays in Subnet %s (its pods' addresses never move to another Subnet): "+
		"free addresses of Subnet %s, or lower the workload's replicas or annotation %s", e.pool, e.err, e.err.Subnet, e.err.Subnet, v1.AnnotationIPNumber)
}

// noSubnetHasRoom says no Subnet named has room for a new pool.
type noSubnetHasRoom struct{ reasons []string }

func (e *noSubnetHasRoom) Error() string {
	return fmt.Sprintf("no Subnet named has room for the pool (%s): free addresses, or name another Subnet in annotation %s",
		strings.Join(e.reasons, "; "), v1.AnnotationSubnet)
}

// ensurePool makes the workload's pool match want: resized in its own Subnet when it
// exists, else carved from the first Subnet named with room for it. It returns what it
// carved (for an event), or why it could not.
func (r *appPools) ensurePool(ctx context.Context, w apppool.Workload, a *appWorkload, want poolWant) (string, error) {
	r.carving.Lock()
	defer r.carving.Unlock()
	var pools v1.IPPoolList
	if err := r.api.List(ctx, &pools); err != nil {
		return "", fmt.Errorf("listing IPPools to carve from: %w", err)
	}
	name := w.PoolNameFor(want.ifName, want.family)
	var current *v1.IPPool
	for i := range pools.Items {
		if pools.Items[i].Name == name {
			current = &pools.Items[i]
		}
	}
	switch {
	case current != nil && current.DeletionTimestamp != nil:
		return "", &poolTerminating{pool: name, kind: w.Kind}
	case current != nil:
		return "", r.resize(ctx, current, pools.Items, want)
	case want.size == 0:
		return "", nil // no pods wanted yet (a DaemonSet before it counts its nodes): an IPPool cannot be empty
	}
	subnet, ips, skipped, err := r.carveNew(ctx, pools.Items, want)
	if err != nil {
		return "", err
	}
	pool := &v1.IPPool{
		ObjectMeta: metav1.ObjectMeta{Name: name,
			Labels:      map[string]string{apppool.LabelOwnerHash: w.Hash(), apppool.LabelSubnet: subnet.Name, apppool.LabelReclaim: fmt.Sprint(want.reclaim)},
			Annotations: map[string]string{apppool.AnnotationOwner: w.String()}},
		Spec: v1.IPPoolSpec{Subnet: subnet.Spec.Subnet, IPs: ips, Gateway: subnet.Spec.Gateway, Vlan: subnet.Spec.Vlan,
			PodAffinity:       a.selector,
			NamespaceAffinity: &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": w.Namespace}}},
	}
	if err := r.c.Create(ctx, pool); err != nil {
		return "", client.IgnoreAlreadyExists(err)
	}
	r.changes.WithLabelValues(appPoolCreated).Inc()
	carved := fmt.Sprintf("IPPool %s: %d addresses carved from Subnet %s", name, max(want.size, 1), subnet.Name)
	if len(skipped) > 0 {
		carved += " (" + strings.Join(skipped, "; ") + ")"
	}
	return carved, nil
}

// carveNew carves a new pool from the first Subnet named that has room for it; skipped
// says why the Subnets before it were passed over. A Subnet that is missing or of the
// other family stops the carve: it is a mistake to fix, not a Subnet without room.
func (r *appPools) carveNew(ctx context.Context, pools []v1.IPPool, want poolWant) (*v1.Subnet, []string, []string, error) {
	var skipped []string
	for _, name := range want.subnets {
		subnet, err := r.subnet(ctx, name, want.family)
		if err != nil {
			return nil, nil, nil, err
		}
		ips, err := apppool.Carve(subnet, pools, nil, "", want.size)
		var noRoom *apppool.NoRoomError
		if errors.As(err, &noRoom) {
			skipped = append(skipped, noRoom.Error())
			continue
		}
		if err != nil {
			return nil, nil, nil, err
		}
		return subnet, ips, skipped, nil
	}
	return nil, nil, nil, &noSubnetHasRoom{reasons: skipped}
}

// resize grows or shrinks an existing pool in the Subnet it was carved from (its label),
// whichever Subnets the workload names now.
func (r *appPools) resize(ctx context.Context, current *v1.IPPool, pools []v1.IPPool, want poolWant) error {
	name := current.Labels[apppool.LabelSubnet]
	if name == "" {
		name = want.subnets[0] // no pool is carved without the label; kept for a hand-made one
	}
	subnet, err := r.subnet(ctx, name, want.family)
	if err != nil {
		return fmt.Errorf("resizing IPPool %s: %w", current.Name, err)
	}
	allocated, err := r.allocated(ctx, current)
	if err != nil {
		return err
	}
	ips, err := apppool.Carve(subnet, pools, current, allocated, want.size)
	var noRoom *apppool.NoRoomError
	if errors.As(err, &noRoom) {
		return &stuckInSubnet{pool: current.Name, err: noRoom}
	}
	if err != nil {
		return err
	}
	pending := shrinkPending(current, ips, want.size)
	if slices.Equal(current.Spec.IPs, ips) {
		return pending
	}
	current.Spec.IPs = ips
	if err := r.c.Update(ctx, current); err != nil {
		return err // the webhook refuses to drop held addresses
	}
	r.changes.WithLabelValues(appPoolResized).Inc()
	return pending
}

// allocated reads what a pool holds from its PoolAllocation, uncached (a pool is never
// shrunk below what it holds; the webhook checks again): none, or one left by an earlier
// pool of the name, holds nothing.
func (r *appPools) allocated(ctx context.Context, pool *v1.IPPool) (string, error) {
	state, err := store.ReadState(ctx, r.api, pool)
	if err != nil {
		return "", fmt.Errorf("resizing pool %s: %w", pool.Name, err)
	}
	return state.Allocated, nil
}

// shrinkWaiting says a pool is still larger than its workload wants: the addresses it
// should drop are held, by pods of the workload still terminating. Nothing about the
// workload changes when they go, so the pool is looked at again.
type shrinkWaiting struct {
	pool       string
	have, want uint64
}

func (e *shrinkWaiting) Error() string {
	return fmt.Sprintf("IPPool %s keeps %d addresses, %d wanted, until its pods release the others", e.pool, e.have, e.want)
}

// shrinkPending is a *shrinkWaiting when the carved ips are more than size.
func shrinkPending(pool *v1.IPPool, ips []string, size int) error {
	view, err := allocator.NewPool(pool.Name, &v1.IPPoolSpec{Subnet: pool.Spec.Subnet, IPs: ips})
	if err != nil {
		return nil
	}
	if have, want := view.Usable.Count(), uint64(max(size, 1)); have > want {
		return &shrinkWaiting{pool: pool.Name, have: have, want: want}
	}
	return nil
}

// subnet reads a Subnet from the API and checks it is of the family it is named for.
func (r *appPools) subnet(ctx context.Context, name string, family v1.IPFamily) (*v1.Subnet, error) {
	subnet := &v1.Subnet{}
	if err := r.api.Get(ctx, client.ObjectKey{Name: name}, subnet); err != nil {
		return nil, fmt.Errorf("reading Subnet %s (annotation %s %q list): %w", name, v1.AnnotationSubnet, familyKey(family), err)
	}
	prefix, err := netip.ParsePrefix(strings.TrimSpace(subnet.Spec.Subnet))
	if err == nil && prefix.Addr().Is6() != (family == v1.IPv6) {
		return nil, fmt.Errorf("annotation %s names Subnet %s in its %q list, but its subnet %s is of the other family: move it to the %q list",
			v1.AnnotationSubnet, name, familyKey(family), prefix, familyKey(otherFamily(family)))
	}
	return subnet, nil
}

func familyKey(f v1.IPFamily) string {
	if f == v1.IPv6 {
		return "ipv6"
	}
	return "ipv4"
}

func otherFamily(f v1.IPFamily) v1.IPFamily {
	if f == v1.IPv6 {
		return v1.IPv4
	}
	return v1.IPv6
}
