package main

import (
	"context"
	"encoding/binary"
	"fmt"
	"net/netip"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/tests/harness"
)

// The simulated cluster's addresses exist only as API data: no link anywhere carries them
// (the test rules keep configured addresses to 10.250.0.0/16, which holds too few for
// 100,000 Endpoints). Pool p is 10.(128+p).0.0/16; the churn pool comes after the last.
const (
	maxPools         = 60
	maxPoolAddresses = 65000
	namespaces       = 20 // Endpoints and pods are spread over this many namespaces
	createWidth      = 64 // parallel creates: enough to keep the apiserver busy on 2 cores
	churnNamespace   = "scale-churn"
)

// clusterObjects creates and tracks the simulated cluster's objects.
type clusterObjects struct {
	o              clusterOptions
	setup, churner client.Client
	created        int // Endpoints created so far
	uids           map[int]types.UID
}

func newClusterObjects(cp *harness.ControlPlane, o clusterOptions) (*clusterObjects, error) {
	c := &clusterObjects{o: o, uids: map[int]types.UID{}}
	var err error
	// distinct user agents, so the audit log tells the harness' own requests apart
	if c.setup, err = clientAs(cp, "underpool-scale/setup"); err != nil {
		return nil, err
	}
	if c.churner, err = clientAs(cp, "underpool-scale/churn"); err != nil {
		return nil, err
	}
	return c, nil
}

func clientAs(cp *harness.ControlPlane, userAgent string) (client.Client, error) {
	saved := cp.Config.UserAgent
	cp.Config.UserAgent = userAgent
	defer func() { cp.Config.UserAgent = saved }()
	return cp.Client(v1AddToScheme)
}

func nodeName(i int) string     { return fmt.Sprintf("node-%04d", i) }
func nsName(i int) string       { return fmt.Sprintf("scale-ns-%02d", i%namespaces) }
func endpointName(i int) string { return fmt.Sprintf("ep-%06d", i) }
func poolName(p int) string     { return fmt.Sprintf("scale-%02d", p) }

// node of Endpoint i: consecutive indexes go to the pools in turn (see address), so the
// node is taken from the index over the pools, and each node holds addresses of every pool.
func (c *clusterObjects) node(i int) int { return (i / c.o.pools) % c.o.nodes }

// onIpamdNode says whether Endpoint i sits on a node that may run an ipamd (node-0 to
// node-<ipamds-1>): those get a live pod, so recycling keeps them.
func (c *clusterObjects) onIpamdNode(i int) bool { return c.node(i) < c.o.ipamds }

// address of Endpoint i: pool i%pools, offsets 1, 2, ... in index order, so each pool's
// allocated set is one run.
func (c *clusterObjects) address(i int) (pool string, prefix string) {
	p := i % c.o.pools
	return poolName(p), offsetAddr(p, uint32(i/c.o.pools)+1).String() + "/16"
}

func offsetAddr(pool int, offset uint32) netip.Addr {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], uint32(10)<<24|uint32(128+pool)<<16|offset)
	return netip.AddrFrom4(b)
}

// setUp creates namespaces, Nodes, pools (their status already marking every address the
// Endpoints will hold, as ipamds that allocated them would have left it), and the pods and
// Endpoints of the nodes that may run an ipamd.
func (c *clusterObjects) setUp(ctx context.Context, rep *clusterReport) error {
	start := time.Now()
	for _, ns := range append(namespaceNames(), churnNamespace) {
		if err := c.setup.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
			return err
		}
	}
	say("creating %d Nodes", c.o.nodes)
	if err := parallel(c.o.nodes, createWidth, func(i int) error {
		return c.setup.Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: nodeName(i),
			Labels: map[string]string{"kubernetes.io/hostname": nodeName(i), "kubernetes.io/os": "linux"}}})
	}); err != nil {
		return fmt.Errorf("nodes: %w", err)
	}
	say("creating %d pools (+1 for churn), status pre-marked", c.o.pools)
	for p := 0; p <= c.o.pools; p++ {
		held := 0
		if p < c.o.pools {
			held = c.o.endpoints / c.o.pools
			if p < c.o.endpoints%c.o.pools {
				held++
			}
		}
		if err := c.createPool(ctx, p, held); err != nil {
			return fmt.Errorf("pool %d: %w", p, err)
		}
	}
	var onIpamd []int
	for i := range c.o.endpoints {
		if c.onIpamdNode(i) {
			onIpamd = append(onIpamd, i)
		}
	}
	say("creating %d pods and their Endpoints on the %d nodes that may run an ipamd", len(onIpamd), c.o.ipamds)
	uids := make([]types.UID, len(onIpamd))
	if err := parallel(len(onIpamd), createWidth, func(k int) error {
		uid, err := createPod(ctx, c.setup, nsName(onIpamd[k]), endpointName(onIpamd[k]), nodeName(c.node(onIpamd[k])))
		uids[k] = uid
		return err
	}); err != nil {
		return fmt.Errorf("pods: %w", err)
	}
	for k, i := range onIpamd {
		c.uids[i] = uids[k]
	}
	if err := c.createEndpoints(ctx, onIpamd); err != nil {
		return err
	}
	rep.Setup.Nodes, rep.Setup.Pods = c.o.nodes, len(onIpamd)
	rep.Memory.FewEndpoints.ClusterEndpoints = c.created
	rep.Setup.Seconds += time.Since(start).Seconds()
	return nil
}

// createRest creates the Endpoints of nodes without an ipamd (no pod objects: no ipamd
// ever reads those pods).
func (c *clusterObjects) createRest(ctx context.Context, rep *clusterReport) error {
	start := time.Now()
	var rest []int
	for i := range c.o.endpoints {
		if !c.onIpamdNode(i) {
			rest = append(rest, i)
		}
	}
	say("creating the other %d Endpoints", len(rest))
	if err := c.createEndpoints(ctx, rest); err != nil {
		return err
	}
	d := time.Since(start)
	rep.Setup.Endpoints = c.created
	rep.Setup.Seconds += d.Seconds()
	if d > 0 {
		rep.Setup.EndpointsPerSecond = float64(len(rest)) / d.Seconds()
	}
	return nil
}

func (c *clusterObjects) createEndpoints(ctx context.Context, idx []int) error {
	start := time.Now()
	err := parallel(len(idx), createWidth, func(k int) error {
		i := idx[k]
		uid := string(c.uids[i])
		if uid == "" {
			uid = fmt.Sprintf("00000000-0000-4000-8000-%012d", i) // a pod no one reads
		}
		pool, addr := c.address(i)
		return c.setup.Create(ctx, endpointObject(nsName(i), endpointName(i), nodeName(c.node(i)), uid, pool, addr))
	})
	c.created += len(idx)
	say("%d Endpoints in the cluster (%.0f/s for the last %d)", c.created, float64(len(idx))/time.Since(start).Seconds(), len(idx))
	return err
}

// endpointObject is an Endpoint as ipamd writes it for a ReplicaSet's pod with one
// interface and one IPv4 address.
func endpointObject(ns, name, node, podUID, pool, addr string) *v1.Endpoint {
	ep := &v1.Endpoint{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Status: v1.EndpointStatus{PodUID: podUID, Node: node, OwnerKind: "ReplicaSet", OwnerName: "app-" + ns,
			Interfaces: []v1.EndpointInterface{{ContainerID: fmt.Sprintf("%064x", hash(name)), Interface: "net1",
				Network: "underlay", PodUID: podUID, IPs: []v1.EndpointIP{{Address: addr, Pool: pool}},
				Created: metav1.NewTime(time.Now().Add(-time.Hour))}}}}
	controllerutil.AddFinalizer(ep, v1.EndpointProtection)
	return ep
}

func hash(s string) uint64 {
	h := uint64(14695981039346656037)
	for _, b := range []byte(s) {
		h = (h ^ uint64(b)) * 1099511628211
	}
	return h
}

func createPod(ctx context.Context, c client.Client, ns, name, node string) (types.UID, error) {
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{"app": "app-" + ns}},
		Spec: corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "app", Image: "registry.k8s.io/pause:3.10"}}}}
	if err := c.Create(ctx, pod); err != nil {
		return "", err
	}
	return pod.UID, nil
}

// createPool creates pool p and marks offsets 1..held in its PoolAllocation.
func (c *clusterObjects) createPool(ctx context.Context, p, held int) error {
	pool := &v1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: poolName(p), Finalizers: protected},
		Spec: v1.IPPoolSpec{Subnet: offsetAddr(p, 0).String() + "/16"}}
	if err := c.setup.Create(ctx, pool); err != nil {
		return err
	}
	if held == 0 {
		return nil
	}
	return writeAllocation(ctx, c.setup, pool, fmt.Sprintf("1-%d", held))
}

func namespaceNames() []string {
	out := make([]string, namespaces)
	for i := range out {
		out[i] = nsName(i)
	}
	return out
}

// churn creates m pods with their Endpoints on nodes without an ipamd, then takes them
// down the way ipamd does on DEL (release: the Endpoint loses its interface and finalizer,
// then is deleted) and deletes the pods. Pool status is not written: a real allocation
// commits it too, one update per batch, which every ipamd watches before and after.
func (c *clusterObjects) churn(ctx context.Context, m int) error {
	free := c.o.nodes - c.o.ipamds
	if free <= 0 {
		return fmt.Errorf("no node without an ipamd")
	}
	names := make([]string, m)
	uids := make([]types.UID, m)
	if err := parallel(m, createWidth, func(i int) error {
		names[i] = fmt.Sprintf("churn-%06d", i)
		node := nodeName(c.o.ipamds + i%free)
		uid, err := createPod(ctx, c.churner, churnNamespace, names[i], node)
		if err != nil {
			return err
		}
		uids[i] = uid
		return c.churner.Create(ctx, endpointObject(churnNamespace, names[i], node, string(uid), poolName(c.o.pools),
			offsetAddr(c.o.pools, uint32(i)+1).String()+"/16"))
	}); err != nil {
		return fmt.Errorf("churn create: %w", err)
	}
	return parallel(m, createWidth, func(i int) error {
		ep := &v1.Endpoint{}
		if err := c.churner.Get(ctx, client.ObjectKey{Namespace: churnNamespace, Name: names[i]}, ep); err != nil {
			return err
		}
		ep.Status.Interfaces = nil
		controllerutil.RemoveFinalizer(ep, v1.EndpointProtection)
		if err := c.churner.Update(ctx, ep); err != nil {
			return err
		}
		if err := c.churner.Delete(ctx, ep); err != nil {
			return err
		}
		zero := int64(0)
		return c.churner.Delete(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: churnNamespace, Name: names[i], UID: uids[i]}},
			&client.DeleteOptions{GracePeriodSeconds: &zero})
	})
}
