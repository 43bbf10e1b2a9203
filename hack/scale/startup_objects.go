package main

import (
	"context"
	"encoding/binary"
	"fmt"
	"net/netip"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/underpool/underpool/api/v1"
)

// The start-up case's objects: o.pools pools, pool k the /26 number k of 10.250.0.0/16;
// o.pods pods bound to startupNode, pod i holding one address of pool startupPoolOf(i)
// in its Endpoint, marked in that pool's PoolAllocation as ipamd would have left it. The
// other pools have no PoolAllocation, as pools nothing was ever allocated from.

func startupPoolName(k int) string { return fmt.Sprintf("startup-%04d", k) }

// startupSubnet is pool k's /26.
func startupSubnet(k int) netip.Prefix {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], uint32(10)<<24|uint32(250)<<16|uint32(k)<<6)
	return netip.PrefixFrom(netip.AddrFrom4(b), 26)
}

// startupPoolOf is the pool pod i's address comes from: spread evenly over the pools.
func (o startupOptions) startupPoolOf(i int) int { return i * o.pools / o.pods }

// startupOffset is pod i's address in its pool, as an offset from the subnet's first
// address: 1 to 62 (a /26 has 64), so the pools' states are not all alike.
func startupOffset(i int) uint32 { return uint32(1 + i%62) }

func startupAddr(k int, offset uint32) netip.Addr {
	b := startupSubnet(k).Addr().As4()
	binary.BigEndian.PutUint32(b[:], binary.BigEndian.Uint32(b[:])+offset)
	return netip.AddrFrom4(b)
}

// createStartupObjects creates the namespace, the Node, the pools (with the held ones'
// PoolAllocations and counts), the pods and their Endpoints.
func createStartupObjects(ctx context.Context, c client.Client, o startupOptions) error {
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: startupNamespace}}); err != nil {
		return err
	}
	if err := c.Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: startupNode,
		Labels: map[string]string{"kubernetes.io/hostname": startupNode, "kubernetes.io/os": "linux"}}}); err != nil {
		return fmt.Errorf("node: %w", err)
	}
	heldBy := map[int]int{} // pool -> pod
	for i := range o.pods {
		heldBy[o.startupPoolOf(i)] = i
	}
	say("creating %d pools, %d of them with a PoolAllocation marking one address", o.pools, len(heldBy))
	if err := parallel(o.pools, createWidth, func(k int) error {
		pool := &v1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: startupPoolName(k), Finalizers: protected},
			Spec: v1.IPPoolSpec{Subnet: startupSubnet(k).String()}}
		if err := c.Create(ctx, pool); err != nil {
			return fmt.Errorf("pool %s: %w", pool.Name, err)
		}
		if i, held := heldBy[k]; held {
			return writeAllocation(ctx, c, pool, strconv.Itoa(int(startupOffset(i))))
		}
		return nil
	}); err != nil {
		return err
	}
	say("creating %d pods on %s and their Endpoints", o.pods, startupNode)
	return parallel(o.pods, createWidth, func(i int) error {
		name := fmt.Sprintf("startup-%04d", i)
		uid, err := createPod(ctx, c, startupNamespace, name, startupNode)
		if err != nil {
			return fmt.Errorf("pod %s: %w", name, err)
		}
		k := o.startupPoolOf(i)
		addr := netip.PrefixFrom(startupAddr(k, startupOffset(i)), 26).String()
		if err := c.Create(ctx, endpointObject(startupNamespace, name, startupNode, string(uid), startupPoolName(k), addr)); err != nil {
			return fmt.Errorf("endpoint %s: %w", name, err)
		}
		return nil
	})
}
