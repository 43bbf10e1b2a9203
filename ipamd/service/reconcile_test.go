package service_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/record"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/core/allocator"
	"github.com/underpool/underpool/ipamd/service"
	"github.com/underpool/underpool/ipamd/store"
	"github.com/underpool/underpool/rpc"
)

// rcCluster serves selection from the fake API; the embedded interface stands for the
// methods these tests never reach.
type rcCluster struct {
	service.Cluster
	api client.Reader
}

func (c *rcCluster) Pod(ctx context.Context, ns, name, _ string) (*corev1.Pod, error) {
	pod := &corev1.Pod{}
	if err := c.api.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, pod); err != nil {
		return nil, client.IgnoreNotFound(err)
	}
	return pod, nil
}

func (c *rcCluster) Namespace(ctx context.Context, name string) (*corev1.Namespace, error) {
	ns := &corev1.Namespace{}
	if err := c.api.Get(ctx, client.ObjectKey{Name: name}, ns); err != nil {
		return nil, client.IgnoreNotFound(err)
	}
	return ns, nil
}

func (c *rcCluster) Node(context.Context) (*corev1.Node, error) { return nil, nil }

func (c *rcCluster) Pools(ctx context.Context) ([]v1.IPPool, error) {
	var l v1.IPPoolList
	err := c.api.List(ctx, &l)
	return l.Items, err
}

func (c *rcCluster) Subnets(ctx context.Context) ([]v1.Subnet, error) {
	var l v1.SubnetList
	err := c.api.List(ctx, &l)
	return l.Items, err
}

// Finding 8: a pool whose status is corrupt (or whose spec does not parse) no longer fails
// startup; it is skipped with an event and a metric, the node serves every other pool, and
// once repaired the addresses its Endpoints hold are marked before anything is handed out.
func TestReconcileSkipsACorruptPoolAndServesTheRest(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, v1.AddToScheme} {
		if err := add(scheme); err != nil {
			t.Fatal(err)
		}
	}
	corrupt := &v1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: "corrupt", Finalizers: []string{v1.PoolProtection}}, Spec: v1.IPPoolSpec{Subnet: "10.0.0.0/29"}} // usable .1-.6
	corruptState := v1.AllocationOf(corrupt)
	corruptState.State.Allocated = "1,2,zz"
	invalid := &v1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: "invalid", Finalizers: []string{v1.PoolProtection}}, Spec: v1.IPPoolSpec{Subnet: "10.2.0.0/24", IPs: []string{"10.9.9.9"}}}
	healthy := &v1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: "healthy", Finalizers: []string{v1.PoolProtection}}, Spec: v1.IPPoolSpec{Subnet: "10.1.0.0/24"}}
	held := &v1.Endpoint{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "old"}, Status: v1.EndpointStatus{Node: "n1",
		Interfaces: []v1.EndpointInterface{{ContainerID: "c0", Interface: "net1", IPs: []v1.EndpointIP{
			{Address: "10.0.0.1/29", Pool: "corrupt"}, {Address: "10.0.0.2/29", Pool: "corrupt"}}},
			{ContainerID: "c0", Interface: "net2", IPs: []v1.EndpointIP{{Address: "10.2.0.7/24", Pool: "invalid"}, {Address: "10.1.0.9/24", Pool: "healthy"}}}}}}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "web", UID: "u1",
		Annotations: map[string]string{v1.AnnotationIPPool: `{"ipv4":["corrupt","healthy"]}`}}}
	only := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "only", UID: "u2",
		Annotations: map[string]string{v1.AnnotationIPPool: `{"ipv4":["corrupt"]}`}}}
	b := fake.NewClientBuilder().WithScheme(scheme).WithStatusSubresource(&v1.IPPool{}).
		WithObjects(corrupt, corruptState, invalid, healthy, held, pod, only, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "ns"}})
	for field, fn := range store.EndpointIndexers() {
		b = b.WithIndex(&v1.Endpoint{}, field, fn)
	}
	api := b.Build()
	events := record.NewFakeRecorder(10)
	metrics := store.NewMetrics(nil)
	pools := store.NewPoolCommitter(api, api, api, nil, zap.NewNop(), metrics)
	s := &service.Service{Node: "n1", Pools: pools, Endpoints: store.NewEndpoints(api, api, api),
		Cluster: &rcCluster{api: api}, Events: events, Log: zap.NewNop(), Metrics: service.NewMetrics(nil)}

	if err := s.Reconcile(ctx); err != nil {
		t.Fatalf("one bad pool failed startup: %v", err)
	}
	if ready, why := s.Ready(); !ready {
		t.Fatalf("not ready: %s", why)
	}
	var got []string
	for len(events.Events) > 0 {
		got = append(got, <-events.Events)
	}
	if len(got) != 2 || !strings.Contains(strings.Join(got, "\n"), "Warning RemarkFailed") {
		t.Errorf("events %q: want a RemarkFailed warning on each bad pool", got)
	}
	for pool, reason := range map[string]string{"corrupt": store.ReasonCorruptStatus, "invalid": store.ReasonInvalidSpec} {
		if n := testutil.ToFloat64(metrics.PendingRemark.WithLabelValues(pool, reason)); n == 0 {
			t.Errorf("no pending-remark metric for %s (%s)", pool, reason)
		}
	}
	if h := readState(t, api, "healthy"); h.Allocated != "9" {
		t.Errorf("healthy pool not re-marked: %q", h.Allocated)
	}

	// the corrupt pool is skipped, the next candidate serves, and the reason says why
	resp, err := s.Allocate(ctx, &rpc.AllocateRequest{ContainerID: "c1", IfName: "net1", Pod: rpc.Pod{Namespace: "ns", Name: "web", UID: "u1"}})
	if err != nil || len(resp.IPs) != 1 || resp.IPs[0].Pool != "healthy" {
		t.Fatalf("allocation with a corrupt first candidate: %+v %v", resp, err)
	}
	_, err = s.Allocate(ctx, &rpc.AllocateRequest{ContainerID: "c2", IfName: "net1", Pod: rpc.Pod{Namespace: "ns", Name: "only", UID: "u2"}})
	if e := <-events.Events; !strings.Contains(e, "Warning PoolUnusable IPPool corrupt: its PoolAllocation state.allocated is corrupt") {
		t.Errorf("allocation from a corrupt pool: event %q", e)
	}
	var rerr *rpc.Error
	if !errors.As(err, &rerr) || !strings.Contains(rerr.Message, "IPPool corrupt: its PoolAllocation state.allocated is corrupt") ||
		!strings.Contains(rerr.Message, "kubectl edit poolallocation corrupt") {
		t.Fatalf("allocation from the corrupt pool alone: %v", err)
	}

	// an operator repairs the status but forgets what this node holds: the re-mark goes
	// first, so neither 10.0.0.1 nor 10.0.0.2 is handed out again
	fixed := &v1.PoolAllocation{}
	if err := api.Get(ctx, client.ObjectKey{Name: "corrupt"}, fixed); err != nil {
		t.Fatal(err)
	}
	fixed.State.Allocated = ""
	if err := api.Update(ctx, fixed); err != nil {
		t.Fatal(err)
	}
	resp, err = s.Allocate(ctx, &rpc.AllocateRequest{ContainerID: "c2", IfName: "net1", Pod: rpc.Pod{Namespace: "ns", Name: "only", UID: "u2"}})
	if err != nil || resp.IPs[0].Address == "10.0.0.1/29" || resp.IPs[0].Address == "10.0.0.2/29" {
		t.Fatalf("after repair: %+v %v", resp, err)
	}
	set, _ := allocator.ParseRunSet(readState(t, api, "corrupt").Allocated)
	if !set.Contains(1) || !set.Contains(2) || set.Count() != 3 {
		t.Fatalf("repaired pool status %v: want the two held addresses and the new one", set)
	}
	if pending := pools.PendingRemarks(); len(pending) != 1 || pending[0] != "invalid" {
		t.Fatalf("pending re-marks %v, want only the still invalid pool", pending)
	}
}

func readState(t *testing.T, c client.Reader, name string) v1.AllocationState {
	t.Helper()
	a := &v1.PoolAllocation{}
	if err := c.Get(context.Background(), client.ObjectKey{Name: name}, a); err != nil {
		t.Fatal(err)
	}
	return a.State
}
