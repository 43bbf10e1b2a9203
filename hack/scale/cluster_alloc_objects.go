package main

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/underpool/underpool/api/v1"
)

// setUpAllocPool creates the allocation pool, fragmented: offsets 1..poolSize, every
// other one held in its PoolAllocation by an Endpoint of a pod on a node without an ipamd (no pod
// object: no ipamd reads it, and no sweeper runs here), as ipamds that allocated them
// would have left it. Written before the ipamds start, so each one's first list has it.
func (c *clusterObjects) setUpAllocPool(ctx context.Context, rep *clusterReport) error {
	a, p := c.o.alloc, c.o.allocPoolIndex()
	start := time.Now()
	if err := c.setup.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: allocNamespace}}); err != nil {
		return err
	}
	held, allocated := fragmented(a.poolSize)
	say("allocation pool %s: %d addresses, %d held (every other one: %d runs, state.allocated %d bytes)",
		allocPoolName, a.poolSize, len(held), len(held), len(allocated))
	pool := &v1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: allocPoolName, Finalizers: protected},
		Spec: v1.IPPoolSpec{Subnet: offsetAddr(p, 0).String() + "/16",
			IPs: []string{offsetAddr(p, 1).String() + "-" + offsetAddr(p, uint32(a.poolSize)).String()}}}
	if err := c.setup.Create(ctx, pool); err != nil {
		return fmt.Errorf("allocation pool: %w", err)
	}
	if err := writeAllocation(ctx, c.setup, pool, allocated); err != nil {
		return fmt.Errorf("allocation pool: %w", err)
	}
	others := c.o.nodes - c.o.ipamds
	if err := parallel(len(held), createWidth, func(k int) error {
		name := fmt.Sprintf("held-%06d", k)
		uid := fmt.Sprintf("00000000-0000-4000-9000-%012d", k) // a pod no one reads
		addr := offsetAddr(p, held[k]).String() + "/16"
		return c.setup.Create(ctx, endpointObject(allocNamespace, name, nodeName(c.o.ipamds+k%others), uid, allocPoolName, addr))
	}); err != nil {
		return fmt.Errorf("allocation pool's Endpoints: %w", err)
	}
	rep.Alloc.PoolSize, rep.Alloc.Held, rep.Alloc.AllocatedBytes = a.poolSize, len(held), len(allocated)
	rep.Setup.Seconds += time.Since(start).Seconds()
	return nil
}

// createAllocPods creates n pods bound round robin to nodes (not measured: a pod object
// exists before its sandbox is made, and the phase measures the sandbox's IPAM only).
func (c *clusterObjects) createAllocPods(ctx context.Context, n int, nodes []string) ([]allocPod, error) {
	pods := make([]allocPod, n)
	err := parallel(n, createWidth, func(i int) error {
		name, node := fmt.Sprintf("alloc-%06d", i), nodes[i%len(nodes)]
		uid, err := createPod(ctx, c.setup, allocNamespace, name, node)
		pods[i] = allocPod{podRef: podRef{namespace: allocNamespace, name: name, uid: string(uid)}, node: i % len(nodes)}
		return err
	})
	return pods, err
}

// allocPod is one pod of the churn and the index of its node among the allocating ipamds.
type allocPod struct {
	podRef
	node int
}
