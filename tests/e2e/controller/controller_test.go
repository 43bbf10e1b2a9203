package controller

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/controller"
	"github.com/underpool/underpool/controller/webhook"
	"github.com/underpool/underpool/rpc"
	"github.com/underpool/underpool/tests/e2e"
	"github.com/underpool/underpool/tests/harness"
)

// The webhook, called by the real apiserver, rejects overlapping pools, addresses outside
// the subnet, a gateway outside it, removing allocated addresses, and Subnet edits that
// would orphan pools; each message names the field.
func TestWebhookRejectsConflictingPools(t *testing.T) {
	v4, _, _ := e2e.NextSubnet()
	b := strings.TrimSuffix(v4, "0/24")
	pool := e2e.NewPool(t, v1.IPPoolSpec{Subnet: v4, IPs: []string{b + "10-" + b + "50"}})
	for _, c := range []struct {
		name string
		spec v1.IPPoolSpec
		want string
	}{
		{"an overlapping pool", v1.IPPoolSpec{Subnet: v4, IPs: []string{b + "40-" + b + "60"}}, "overlaps IPPool " + pool.Name},
		{"an address outside the subnet", v1.IPPoolSpec{Subnet: v4, IPs: []string{"10.250.254.1"}}, "spec.ips[0]"},
		{"a gateway outside the subnet", v1.IPPoolSpec{Subnet: v4, IPs: []string{b + "60"}, Gateway: "10.250.254.1"}, "spec.gateway"},
		{"a subnet that is not a CIDR (CEL)", v1.IPPoolSpec{Subnet: "10.250.1.1"}, "spec.subnet"},
		{"an entry that is neither an address nor a range (CEL)", v1.IPPoolSpec{Subnet: v4, ExcludeIPs: []string{b + "1/24"}},
			"spec.excludeIPs: Invalid value"},
	} {
		t.Run(c.name, func(t *testing.T) {
			bad := &v1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: "bad-" + rand.String(5)}, Spec: c.spec}
			err := e2e.Suite.Client.Create(e2e.Ctx(t), bad)
			if err == nil {
				_ = e2e.Suite.Client.Delete(context.Background(), bad)
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %q does not say %q", err, c.want)
			}
		})
	}
	e2e.NewPool(t, v1.IPPoolSpec{Subnet: v4, IPs: []string{b + "51-" + b + "90"}}) // a neighbour is fine

	ns := e2e.NewNamespace(t)
	if _, err := e2e.Suite.Ipamd.Client.Allocate(e2e.Ctx(t), &rpc.AllocateRequest{ContainerID: "ctr-w", IfName: "net1",
		Pod: rpc.Pod{Namespace: ns, Name: "w"}, IPv4Pools: []string{pool.Name}}); err != nil {
		t.Fatal(err)
	}
	// the controller writes the pool's status meanwhile (its counts, its state's UID): a
	// conflict is retried on the newest copy, any other answer is the webhook's
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		shrink := e2e.FreshPool(t, pool.Name)
		shrink.Spec.IPs = []string{b + "30-" + b + "50"}
		return e2e.Suite.Client.Update(e2e.Ctx(t), shrink)
	})
	if err == nil || !strings.Contains(err.Error(), "still allocated") {
		t.Fatalf("removing an allocated address: %v", err)
	}

	sub := e2e.NewSubnet(t, v1.SubnetSpec{Subnet: v4})
	// the controller writes the Subnet's status meanwhile: edit the newest copy
	for attempt := 0; attempt < 10; attempt++ {
		if err = e2e.Suite.Client.Get(e2e.Ctx(t), client.ObjectKeyFromObject(sub), sub); err != nil {
			t.Fatal(err)
		}
		sub.Spec.Subnet = "10.250.253.0/24"
		if err = e2e.Suite.Client.Update(e2e.Ctx(t), sub); err == nil || !strings.Contains(err.Error(), "has been modified") {
			break
		}
	}
	if err == nil || !strings.Contains(err.Error(), "would orphan IPPools") {
		t.Fatalf("moving a Subnet away from its pools: %v", err)
	}
	e2e.ReleaseAll(t, ns)
}

// A pool with live allocations is not deleted until its last address is released, and
// hands out nothing while it waits.
func TestPoolWithAllocationsWaitsForRelease(t *testing.T) {
	v4, _, _ := e2e.NextSubnet()
	pool := e2e.NewPool(t, v1.IPPoolSpec{Subnet: v4})
	e2e.WaitFor(t, "the pool-protection finalizer", func() bool {
		return strings.Contains(strings.Join(e2e.FreshPool(t, pool.Name).Finalizers, ","), controller.PoolProtection)
	})
	ns := e2e.NewNamespace(t)
	if _, err := e2e.Suite.Ipamd.Client.Allocate(e2e.Ctx(t), &rpc.AllocateRequest{ContainerID: "ctr-f", IfName: "net1",
		Pod: rpc.Pod{Namespace: ns, Name: "f"}, IPv4Pools: []string{pool.Name}}); err != nil {
		t.Fatal(err)
	}
	if err := e2e.Suite.Client.Delete(e2e.Ctx(t), pool); err != nil {
		t.Fatal(err)
	}
	if p := e2e.FreshPool(t, pool.Name); p.DeletionTimestamp == nil {
		t.Fatal("pool not marked for deletion")
	}
	_, err := e2e.Suite.Ipamd.Client.Allocate(e2e.Ctx(t), &rpc.AllocateRequest{ContainerID: "ctr-f2", IfName: "net1",
		Pod: rpc.Pod{Namespace: ns, Name: "f2"}, IPv4Pools: []string{pool.Name}})
	if err == nil || !strings.Contains(err.Error(), "being deleted") {
		t.Fatalf("allocation from a pool being deleted: %v", err)
	}
	e2e.ReleaseAll(t, ns)
	e2e.WaitGone(t, "the emptied pool to go", pool)
}

// A ReservedIP covering an address a pod holds reports it on its status.
func TestReservedIPReportsAddressesInUse(t *testing.T) {
	v4, _, _ := e2e.NextSubnet()
	pool := e2e.NewPool(t, v1.IPPoolSpec{Subnet: v4})
	ns := e2e.NewNamespace(t)
	resp, err := e2e.Suite.Ipamd.Client.Allocate(e2e.Ctx(t), &rpc.AllocateRequest{ContainerID: "ctr-r", IfName: "net1",
		Pod: rpc.Pod{Namespace: ns, Name: "holder"}, IPv4Pools: []string{pool.Name}})
	if err != nil {
		t.Fatal(err)
	}
	held := strings.Split(resp.IPs[0].Address, "/")[0]
	res := e2e.NewReservedIP(t, held)
	want := held + " " + ns + "/holder"
	e2e.WaitFor(t, "status.inUse to report "+want, func() bool {
		_ = e2e.Suite.Client.Get(e2e.Ctx(t), client.ObjectKeyFromObject(res), res)
		return len(res.Status.InUse) == 1 && res.Status.InUse[0] == want
	})
	e2e.ReleaseAll(t, ns)
	e2e.WaitFor(t, "status.inUse to clear", func() bool {
		_ = e2e.Suite.Client.Get(e2e.Ctx(t), client.ObjectKeyFromObject(res), res)
		return len(res.Status.InUse) == 0
	})
}

// A second controller replica (not the leader) serves a certificate signed by the CA the
// leader registered, so the apiserver's calls succeed whichever replica they reach and
// after a leader change.
func TestControllerReplicasShareTheWebhookCA(t *testing.T) {
	port, err := harness.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	p, err := harness.StartProcess("controller-2", filepath.Join(e2e.Suite.Bin, "ipamd"), []string{"--mode=controller",
		"--kubeconfig", e2e.Suite.CP.KubeconfigPath, "--webhook-host=127.0.0.1", fmt.Sprintf("--webhook-port=%d", port),
		fmt.Sprintf("--webhook-url=https://127.0.0.1:%d", port),
		"--leader-election-namespace=default", "--health-address=", "--orphan-interval=0", "--commit-window=" + e2e.CommitWindow}, filepath.Join(e2e.Suite.Dir, "controller-2.log"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Stop() })
	cfg := &admissionregistrationv1.ValidatingWebhookConfiguration{}
	if err := e2e.Suite.Client.Get(e2e.Ctx(t), client.ObjectKey{Name: webhook.ConfigName}, cfg); err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(cfg.Webhooks[0].ClientConfig.CABundle) {
		t.Fatal("the registered caBundle holds no certificate")
	}
	e2e.WaitFor(t, "the second replica's webhook to accept a TLS handshake", func() bool {
		conn, err := tls.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port), &tls.Config{RootCAs: roots, ServerName: "127.0.0.1"})
		if err == nil {
			conn.Close()
			return true
		}
		// keep waiting only while the server is not up yet; a bad certificate is final
		var unknown x509.UnknownAuthorityError
		if errors.As(err, &unknown) {
			t.Fatalf("the second replica's certificate is not signed by the registered CA: %v", err)
		}
		return false
	})
}

// A Subnet's status counts the addresses it offers and those its pools hold, so
// `kubectl get subnets` shows them.
func TestSubnetStatusCountsItsPools(t *testing.T) {
	v4, _, _ := e2e.NextSubnet()
	b := strings.TrimSuffix(v4, "0/24")
	sub := e2e.NewSubnet(t, v1.SubnetSpec{Subnet: v4, Gateway: b + "1"})
	pool := e2e.NewPool(t, v1.IPPoolSpec{Subnet: v4, IPs: []string{b + "10-" + b + "19"}})
	ns := e2e.NewNamespace(t)
	if _, err := e2e.Suite.Ipamd.Client.Allocate(e2e.Ctx(t), &rpc.AllocateRequest{ContainerID: "ctr-count", IfName: "net1",
		Pod: rpc.Pod{Namespace: ns, Name: "count"}, IPv4Pools: []string{pool.Name}}); err != nil {
		t.Fatal(err)
	}
	e2e.WaitFor(t, "the Subnet's status to count 253 offered and 1 held", func() bool {
		_ = e2e.Suite.Client.Get(e2e.Ctx(t), client.ObjectKeyFromObject(sub), sub)
		return sub.Status.TotalIPCount == 253 && sub.Status.AllocatedIPCount == 1
	})
	e2e.ReleaseAll(t, ns)
	e2e.WaitFor(t, "the Subnet's status to count 0 held", func() bool {
		_ = e2e.Suite.Client.Get(e2e.Ctx(t), client.ObjectKeyFromObject(sub), sub)
		return sub.Status.AllocatedIPCount == 0
	})
}
