package rbac

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/controller"
	"github.com/underpool/underpool/controller/webhook"
	"github.com/underpool/underpool/ipamd/store"
	"github.com/underpool/underpool/tests/e2e"
	"github.com/underpool/underpool/tests/harness"
)

// as returns the admin config impersonating a component's ServiceAccount.
func as(sa string) *rest.Config {
	cfg := rest.CopyConfig(suite.cp.Config)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: "system:serviceaccount:" + namespace + ":" + sa,
		Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + namespace, "system:authenticated"}}
	return cfg
}

// The controller, run as its ServiceAccount with nothing but the generated RBAC, does its
// whole job: wins its lease, makes its CA Secret, registers its webhook and serves it,
// adds the pool-protection finalizer, and writes an UnderlayNetwork's NAD and status. No
// request is refused on the way.
func TestControllerRunsOnItsRBAC(t *testing.T) {
	port, err := harness.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zap.InfoLevel)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- controller.Run(ctx, as("underpool-controller"), controller.Options{
			Webhook: webhook.Options{Host: "127.0.0.1", Port: port, Endpoint: webhook.Endpoint{URL: fmt.Sprintf("https://127.0.0.1:%d", port)},
				CertLifetime: time.Hour},
			LeaderElectionNamespace: namespace, OrphanInterval: 200 * time.Millisecond, OrphanGrace: time.Second,
			CommitWindow:    store.Window(4 * time.Second),
			RecycleInterval: 200 * time.Millisecond,
		}, zap.New(core))
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("controller: %v", err)
		}
		for _, e := range logs.All() {
			if msg := fmt.Sprint(e.Message, e.ContextMap()); strings.Contains(msg, "forbidden") {
				t.Errorf("the controller was refused a request: %s", msg)
			}
		}
	}()

	c := suite.client
	probe := &v1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: "rbac-probe"}, Spec: v1.IPPoolSpec{Subnet: "10.251.0.0/24", Gateway: "10.251.1.1"}}
	eventually(t, "the webhook serves (a gateway outside its subnet is refused)", func() error {
		err := c.Create(ctx, probe.DeepCopy(), client.DryRunAll)
		if err == nil || !strings.Contains(err.Error(), "spec.gateway") {
			return fmt.Errorf("dry-run create: %v", err)
		}
		return nil
	})
	for _, obj := range []client.Object{
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: webhook.CASecretName}},
		&coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: "underpool-controller"}},
		&admissionregistrationv1.ValidatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: webhook.ConfigName}},
	} {
		if err := c.Get(ctx, client.ObjectKeyFromObject(obj), obj); err != nil {
			t.Errorf("the controller did not make %T %s: %v", obj, obj.GetName(), err)
		}
	}
	pool := &v1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: "rbac-pool"}, Spec: v1.IPPoolSpec{Subnet: "10.251.2.0/24"}}
	if err := c.Create(ctx, pool); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the pool-protection finalizer is added", func() error {
		got := &v1.IPPool{}
		if err := c.Get(ctx, client.ObjectKeyFromObject(pool), got); err != nil {
			return err
		}
		if len(got.Finalizers) == 0 {
			return fmt.Errorf("no finalizer on %s", got.Name)
		}
		return nil
	})
	// an orphan (allocated, held by no Endpoint) is freed by the sweeper through its RBAC
	markAllocated(t, ctx, pool, "7")
	eventually(t, "the sweeper frees the orphan", func() error { return allocatedNothing(ctx, pool) })
	// the Endpoint of a node that no longer exists, whose pod is gone, is recycled
	// through its RBAC: no ipamd would ever look at it
	markAllocated(t, ctx, pool, "9")
	ep := &v1.Endpoint{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "rbac-gone-pod", Finalizers: []string{v1.EndpointProtection}},
		Status: v1.EndpointStatus{Node: "rbac-gone-node", PodUID: "uid-gone", Interfaces: []v1.EndpointInterface{{
			ContainerID: "ctr-gone", Interface: "net1", PodUID: "uid-gone", Created: metav1.NewTime(time.Now().Add(-time.Hour)),
			IPs: []v1.EndpointIP{{Address: "10.251.2.9/24", Pool: pool.Name}}}}}}
	if err := c.Create(ctx, ep); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the gone node's Endpoint is recycled and its address freed", func() error {
		err := c.Get(ctx, client.ObjectKeyFromObject(ep), &v1.Endpoint{})
		if !apierrors.IsNotFound(err) {
			return fmt.Errorf("Endpoint %s still there (%v)", ep.Name, err)
		}
		return allocatedNothing(ctx, pool)
	})
	// an UnderlayNetwork's NAD is written, and its status, through its RBAC
	net := &v1.UnderlayNetwork{ObjectMeta: metav1.ObjectMeta{Name: "rbac-net"}, Spec: v1.UnderlayNetworkSpec{
		Namespaces: []string{"default"}, Macvlan: &v1.MacvlanNetwork{Master: "eth1"}}}
	if err := c.Create(ctx, net); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the network's NAD is written and its status says so", func() error {
		nad := &unstructured.Unstructured{}
		nad.SetGroupVersionKind(schema.GroupVersionKind{Group: "k8s.cni.cncf.io", Version: "v1", Kind: "NetworkAttachmentDefinition"})
		if err := c.Get(ctx, client.ObjectKey{Namespace: "default", Name: "rbac-net"}, nad); err != nil {
			return err
		}
		got := &v1.UnderlayNetwork{}
		if err := c.Get(ctx, client.ObjectKeyFromObject(net), got); err != nil {
			return err
		}
		if len(got.Status.NetworkAttachmentDefinitions) != 1 {
			return fmt.Errorf("status lists %v", got.Status.NetworkAttachmentDefinitions)
		}
		return nil
	})
}

// markAllocated writes the pool's allocation state as holding the offsets in runs (one
// address), as an ipamd that crashed before its Endpoint write leaves it.
func markAllocated(t *testing.T, ctx context.Context, pool *v1.IPPool, runs string) {
	t.Helper()
	if err := suite.client.Get(ctx, client.ObjectKeyFromObject(pool), pool); err != nil {
		t.Fatal(err)
	}
	a := &v1.PoolAllocation{}
	err := suite.client.Get(ctx, client.ObjectKey{Name: pool.Name}, a)
	switch {
	case e2e.IsNotFound(err):
		a = v1.AllocationOf(pool)
		a.State.Allocated, a.State.AllocatedIPCount = runs, 1
		err = suite.client.Create(ctx, a)
	case err == nil:
		a.State.Allocated, a.State.AllocatedIPCount = runs, 1
		err = suite.client.Update(ctx, a)
	}
	if err != nil {
		t.Fatal(err)
	}
}

// allocatedNothing says why the pool still holds addresses, or nil.
func allocatedNothing(ctx context.Context, pool *v1.IPPool) error {
	return holdsNothing(ctx, suite.client, pool.Name)
}

// holdsNothing says why the pool's allocation state still holds addresses, or nil, within
// e2e.SettleBound: ipamd frees an address just after the DEL that unrecorded it answered.
func holdsNothing(ctx context.Context, c client.Reader, pool string) error {
	deadline := time.Now().Add(e2e.SettleBound)
	for {
		got := &v1.PoolAllocation{}
		err := c.Get(ctx, client.ObjectKey{Name: pool}, got)
		if err != nil && !e2e.IsNotFound(err) {
			return err
		}
		if got.State.Allocated == "" {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("pool %s allocated %q", pool, got.State.Allocated)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// eventually is e2e.Eventually, within a minute, for a condition that says why it fails.
func eventually(t *testing.T, what string, ok func() error) {
	t.Helper()
	e2e.Eventually(t, what, time.Minute, func() (bool, string) {
		err := ok()
		return err == nil, fmt.Sprint(err)
	})
}
