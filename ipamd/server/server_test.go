package server_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/zap"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/ipamd/cluster"
	"github.com/underpool/underpool/ipamd/server"
	"github.com/underpool/underpool/ipamd/service"
	"github.com/underpool/underpool/ipamd/store"
	"github.com/underpool/underpool/rpc"
)

// serve starts a server for a node on a fake API, on a socket in a temporary directory,
// and returns a client for it, the service behind it and the socket path.
func serve(t *testing.T) (*rpc.Client, *service.Service, string) {
	t.Helper()
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, v1.AddToScheme} {
		if err := add(scheme); err != nil {
			t.Fatal(err)
		}
	}
	b := fake.NewClientBuilder().WithScheme(scheme).WithStatusSubresource(&v1.IPPool{}).WithObjects(
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "ns"}},
		&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "a", UID: "uid-a"}, Spec: corev1.PodSpec{NodeName: "n1"}},
		&v1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: "p", Finalizers: []string{v1.PoolProtection}}, Spec: v1.IPPoolSpec{Subnet: "10.250.1.0/24"}})
	for field, fn := range store.EndpointIndexers() {
		b = b.WithIndex(&v1.Endpoint{}, field, fn)
	}
	api := b.Build()
	svc := &service.Service{Node: "n1", Pools: store.NewPoolCommitter(api, api, api, nil, nil, nil),
		Endpoints: store.NewEndpoints(api, api, api), Cluster: cluster.New("n1", api, api),
		Log: zap.NewNop(), Metrics: service.NewMetrics(nil)}
	socket := filepath.Join(t.TempDir(), "ipamd.sock")
	l, err := server.Listen(socket, -1)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- (&server.Server{Service: svc, Log: zap.NewNop()}).Serve(ctx, l) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("Serve: %v", err)
		}
	})
	return rpc.NewClient(socket), svc, socket
}

func requireRefused(t *testing.T, err error, code uint, field string) {
	t.Helper()
	var e *rpc.Error
	if !errors.As(err, &e) || e.Code != code || e.Field != field {
		t.Fatalf("got %#v, want code %d naming field %q", err, code, field)
	}
}

// Until its Endpoints are reconciled ipamd answers status but refuses every allocation
// and release with try-again-later (invariant 5), saying why.
func TestNotReadyRefusesWork(t *testing.T) {
	c, svc, _ := serve(t)
	ctx := context.Background()
	st, err := c.Status(ctx)
	if err != nil || st.Ready || st.Node != "n1" || st.Reason == "" {
		t.Fatalf("status before reconciling = %+v, %v", st, err)
	}
	for name, call := range map[string]func() error{
		"allocate": func() error {
			_, err := c.Allocate(ctx, &rpc.AllocateRequest{ContainerID: "c", IfName: "net1", Pod: rpc.Pod{Namespace: "ns", Name: "a"}, IPv4Pools: []string{"p"}})
			return err
		},
		"release": func() error { return c.Release(ctx, &rpc.ReleaseRequest{ContainerID: "c"}) },
		"gc": func() error {
			_, err := c.GC(ctx, &rpc.GCRequest{Network: "under"})
			return err
		},
	} {
		t.Run(name, func(t *testing.T) {
			err := call()
			requireRefused(t, err, rpc.CodeTryAgainLater, "")
			if !strings.Contains(err.Error(), "not ready") {
				t.Fatalf("refusal %q does not say ipamd is not ready", err)
			}
		})
	}
	if err := svc.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if st, err := c.Status(ctx); err != nil || !st.Ready {
		t.Fatalf("status after reconciling = %+v, %v", st, err)
	}
	resp, err := c.Allocate(ctx, &rpc.AllocateRequest{ContainerID: "c", IfName: "net1", Pod: rpc.Pod{Namespace: "ns", Name: "a"}, IPv4Pools: []string{"p"}})
	if err != nil || len(resp.IPs) != 1 || resp.IPs[0].Pool != "p" {
		t.Fatalf("allocate once ready = %+v, %v", resp, err)
	}
}

// A bad request is refused as such (CNI code 102, HTTP 400), naming the field at fault.
func TestBadRequestsNameTheField(t *testing.T) {
	c, svc, _ := serve(t)
	ctx := context.Background()
	if err := svc.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	pod := rpc.Pod{Namespace: "ns", Name: "a"}
	for _, tc := range []struct {
		name, field string
		call        func() error
	}{
		{"allocate without containerID", "containerID", func() error {
			_, err := c.Allocate(ctx, &rpc.AllocateRequest{IfName: "net1", Pod: pod})
			return err
		}},
		{"allocate without ifName", "ifName", func() error {
			_, err := c.Allocate(ctx, &rpc.AllocateRequest{ContainerID: "c", Pod: pod})
			return err
		}},
		{"allocate without pod", "pod", func() error {
			_, err := c.Allocate(ctx, &rpc.AllocateRequest{ContainerID: "c", IfName: "net1"})
			return err
		}},
		{"allocate with a requested address that is none", "requestedIPs", func() error {
			_, err := c.Allocate(ctx, &rpc.AllocateRequest{ContainerID: "c", IfName: "net1", Pod: pod, RequestedIPs: []string{"10.250.1.300"}})
			return err
		}},
		{"release without containerID", "containerID", func() error { return c.Release(ctx, &rpc.ReleaseRequest{Pod: pod}) }},
		{"release with a conflict that is no address", "conflicts", func() error {
			return c.Release(ctx, &rpc.ReleaseRequest{ContainerID: "c", Conflicts: []rpc.Conflict{{IP: "x"}}})
		}},
		{"gc without network", "network", func() error {
			_, err := c.GC(ctx, &rpc.GCRequest{})
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) { requireRefused(t, tc.call(), rpc.CodeBadRequest, tc.field) })
	}
}

// A body that is not the path's request (unknown field, not JSON) is refused with 400 and
// a message naming what is wrong, before any work is done.
func TestMalformedBodyIsRefused(t *testing.T) {
	_, svc, socket := serve(t)
	if err := svc.Reconcile(context.Background()); err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", socket)
	}}}
	for _, tc := range []struct{ name, body, want string }{
		{"unknown field", `{"containerID":"c","ifNmae":"net1"}`, `unknown field \"ifNmae\"`},
		{"not JSON", `containerID=c`, "not a valid allocate request"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := hc.Post("http://ipamd"+rpc.PathAllocate, "application/json", strings.NewReader(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), tc.want) {
				t.Fatalf("%d %s, want 400 saying %s", resp.StatusCode, body, tc.want)
			}
		})
	}
}

// The socket is root's alone: whoever may write to it may take addresses.
func TestSocketIsPrivate(t *testing.T) {
	_, _, socket := serve(t)
	fi, err := os.Stat(socket)
	if err != nil {
		t.Fatal(err)
	}
	if mode := fi.Mode().Perm(); mode != 0o600 {
		t.Fatalf("socket mode %o, want 600", mode)
	}
	// a stale socket file from a previous run does not stop the next Listen
	l, err := server.Listen(socket, -1)
	if err != nil {
		t.Fatalf("listening over a stale socket: %v", err)
	}
	l.Close()
}

// GC's share limit is lifted by ?force=true on the request, and only by it.
func TestGCForceParameter(t *testing.T) {
	c, svc, socket := serve(t)
	ctx := context.Background()
	if err := svc.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	svc.GCMaxShare = 0.5
	for _, ifName := range []string{"net1", "net2"} {
		if _, err := c.Allocate(ctx, &rpc.AllocateRequest{ContainerID: "c", IfName: ifName, Network: "under",
			Pod: rpc.Pod{Namespace: "ns", Name: "a"}, IPv4Pools: []string{"p"}}); err != nil {
			t.Fatal(err)
		}
	}
	_, err := c.GC(ctx, &rpc.GCRequest{Network: "under"})
	requireRefused(t, err, rpc.CodeBadRequest, "valid")

	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", socket)
	}}}
	resp, err := hc.Post("http://ipamd"+rpc.PathGC+"?force=true", "application/json", strings.NewReader(`{"network":"under","valid":[]}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"net2"`) {
		t.Fatalf("forced GC: %d %s, want both attachments released", resp.StatusCode, body)
	}
}
