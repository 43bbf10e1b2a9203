package rbac

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/ipamd/daemon"
	"github.com/underpool/underpool/rpc"
)

// kubeconfigAs writes the admin kubeconfig impersonating a component's ServiceAccount.
func kubeconfigAs(t *testing.T, sa string) string {
	t.Helper()
	cfg, err := clientcmd.LoadFromFile(suite.cp.KubeconfigPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, auth := range cfg.AuthInfos {
		auth.Impersonate = "system:serviceaccount:" + namespace + ":" + sa
		auth.ImpersonateGroups = []string{"system:serviceaccounts", "system:serviceaccounts:" + namespace, "system:authenticated"}
	}
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		t.Fatal(err)
	}
	return path
}

// ipamd, run as its ServiceAccount with nothing but the generated RBAC, syncs its caches,
// reconciles, and serves an ADD and a DEL (pool status and Endpoint writes) and a GC,
// without a request refused.
func TestIpamdRunsOnItsRBAC(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	c := suite.client
	for _, obj := range []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "app"}},
		&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"}},
		&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "app", Name: "a"}, Spec: corev1.PodSpec{NodeName: "n1",
			Containers: []corev1.Container{{Name: "c", Image: "pause"}}}},
		&v1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: "ipamd-pool", Finalizers: []string{v1.PoolProtection}}, Spec: v1.IPPoolSpec{Subnet: "10.252.0.0/24"}},
	} {
		if err := c.Create(ctx, obj); err != nil {
			t.Fatalf("creating %s: %v", obj.GetName(), err)
		}
	}
	pod := &corev1.Pod{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: "app", Name: "a"}, pod); err != nil {
		t.Fatal(err)
	}
	socket := filepath.Join(t.TempDir(), "ipamd.sock")
	core, logs := observer.New(zap.InfoLevel)
	done := make(chan error, 1)
	go func() {
		done <- daemon.Run(ctx, daemon.Options{Kubeconfig: kubeconfigAs(t, "underpool-ipamd"), NodeName: "n1", Socket: socket,
			SocketGroup: -1, QPS: 50, Burst: 100, Quarantine: time.Minute}, zap.New(core))
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("ipamd: %v", err)
		}
		for _, e := range logs.All() {
			if msg := fmt.Sprint(e.Message, e.ContextMap()); strings.Contains(msg, "forbidden") {
				t.Errorf("ipamd was refused a request: %s", msg)
			}
		}
	}()
	rc := rpc.NewClient(socket)
	eventually(t, "ipamd is ready", func() error {
		st, err := rc.Status(ctx)
		if err != nil {
			return err
		}
		if !st.Ready {
			return fmt.Errorf("not ready: %s", st.Reason)
		}
		return nil
	})
	p := rpc.Pod{Namespace: "app", Name: "a", UID: string(pod.UID)}
	resp, err := rc.Allocate(ctx, &rpc.AllocateRequest{ContainerID: "ctr", IfName: "net1", Network: "n", Pod: p, IPv4Pools: []string{"ipamd-pool"}})
	if err != nil || len(resp.IPs) != 1 {
		t.Fatalf("ADD as underpool-ipamd: %+v, %v", resp, err)
	}
	if _, err := rc.GC(ctx, &rpc.GCRequest{Network: "n", Valid: []rpc.Attachment{{ContainerID: "ctr", IfName: "net1"}}}); err != nil {
		t.Fatalf("GC as underpool-ipamd: %v", err)
	}
	if err := rc.Release(ctx, &rpc.ReleaseRequest{ContainerID: "ctr", IfName: "net1", Pod: p}); err != nil {
		t.Fatalf("DEL as underpool-ipamd: %v", err)
	}
	if err := holdsNothing(ctx, c, "ipamd-pool"); err != nil {
		t.Fatalf("after DEL: %v", err)
	}
}
