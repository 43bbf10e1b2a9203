package harness

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// ControlPlaneOptions tune StartControlPlane.
type ControlPlaneOptions struct {
	// CRDPaths are extra CRD files or directories to install on top of
	// DefaultCRDPaths, e.g. <cache>/whereabouts-crds. They must exist.
	CRDPaths []string
	// LogDir receives etcd.log and kube-apiserver.log and survives Stop.
	// Empty means inside Dir, removed by Stop.
	LogDir string
	// StartTimeout bounds startup, CRD installation included (default 2 min,
	// generous for a loaded CI machine; a healthy start takes seconds).
	StartTimeout time.Duration
	// Lifecycle also starts kube-controller-manager and kube-scheduler, so
	// Deployments, StatefulSets, namespaces, node health and garbage
	// collection behave as in a cluster. Pods then need something acting as
	// their node's kubelet (tests/harness/kubelet) to become Running and to
	// finish terminating.
	Lifecycle bool
	// AuditPolicyFile and AuditLogPath, both set, make kube-apiserver write an
	// audit log (JSON lines): the only per-client request record it keeps, since
	// apiserver_request_total has no user-agent label.
	AuditPolicyFile, AuditLogPath string
	// ExtraAPIServerArgs are appended to kube-apiserver's flags.
	ExtraAPIServerArgs []string
}

// ControlPlane is a local etcd + kube-apiserver on 127.0.0.1. By default there
// is no scheduler, controller manager or kubelet: objects are stored and
// served, nothing reconciles them, which is all a CNI plugin and ipamd need.
// With ControlPlaneOptions.Lifecycle the controller manager and scheduler run
// too; kubelets are simulated per node by tests/harness/kubelet.
type ControlPlane struct {
	// Config is an admin (system:masters) client config.
	Config *rest.Config
	// KubeconfigPath is the same identity as a kubeconfig file, for programs
	// (multus, ipamd, kubectl).
	KubeconfigPath string
	// Dir holds data, credentials and (by default) logs; Stop removes it.
	Dir string
	// Etcd and APIServer expose the processes, e.g. to read their logs or to
	// stop the apiserver to test how clients cope with an outage.
	Etcd, APIServer *Process
	// ControllerManager and Scheduler are nil unless Lifecycle was set.
	ControllerManager, Scheduler *Process

	stopOnce sync.Once
	stopErr  error
}

// StartControlPlane builds the binaries if needed (tests/tools/build.sh
// controlplane), starts etcd and kube-apiserver on free ports, writes the
// admin kubeconfig, and installs and waits for the CRDs. On error everything
// already started is stopped again.
func StartControlPlane(opts ControlPlaneOptions) (*ControlPlane, error) {
	bins := []string{"etcd", "kube-apiserver"}
	if opts.Lifecycle {
		bins = append(bins, lifecycleBinaries...)
	}
	if err := EnsureTools("controlplane", bins...); err != nil {
		return nil, err
	}
	if opts.StartTimeout == 0 {
		opts.StartTimeout = 2 * time.Minute
	}
	dir, err := os.MkdirTemp("", "underpool-cp-")
	if err != nil {
		return nil, err
	}
	cp := &ControlPlane{Dir: dir, KubeconfigPath: filepath.Join(dir, "kubeconfig")}
	ctx, cancel := context.WithTimeout(context.Background(), opts.StartTimeout)
	defer cancel()
	if err := cp.start(ctx, opts); err != nil {
		_ = cp.Stop()
		return nil, fmt.Errorf("start control plane: %w", err)
	}
	return cp, nil
}

func (cp *ControlPlane) start(ctx context.Context, opts ControlPlaneOptions) error {
	logDir := opts.LogDir
	if logDir == "" {
		logDir = cp.Dir
	}
	ports, err := freePorts(3)
	if err != nil {
		return err
	}
	etcdURL := "http://127.0.0.1:" + strconv.Itoa(ports[0])
	peerURL := "http://127.0.0.1:" + strconv.Itoa(ports[1])
	apiPort := strconv.Itoa(ports[2])

	cp.Etcd, err = StartProcess("etcd", filepath.Join(CacheBinDir(), "etcd"), []string{
		"--data-dir", filepath.Join(cp.Dir, "etcd"),
		"--listen-client-urls", etcdURL, "--advertise-client-urls", etcdURL,
		"--listen-peer-urls", peerURL,
		"--initial-advertise-peer-urls", peerURL, "--initial-cluster", "default=" + peerURL,
		// The data is thrown away after the run: skip fsync, it dominates
		// write latency on slow disks and would distort the benchmark.
		"--unsafe-no-fsync",
	}, filepath.Join(logDir, "etcd.log"))
	if err != nil {
		return err
	}
	if err := waitUntil(ctx, "etcd healthy", []*Process{cp.Etcd}, func(ctx context.Context) error {
		return etcdHealthy(ctx, etcdURL)
	}); err != nil {
		return err
	}

	creds, err := writeAPIServerCredentials(cp.Dir)
	if err != nil {
		return err
	}
	apiArgs := []string{
		"--etcd-servers", etcdURL,
		"--bind-address", "127.0.0.1", "--advertise-address", "127.0.0.1", "--secure-port", apiPort,
		"--cert-dir", filepath.Join(cp.Dir, "certs"),
		"--tls-cert-file", creds.servingCert, "--tls-private-key-file", creds.servingKey,
		"--service-account-key-file", creds.saPub, "--service-account-signing-key-file", creds.saKey,
		"--service-account-issuer", "https://kubernetes.default.svc",
		"--token-auth-file", creds.tokenFile,
		"--authorization-mode", "RBAC",
		"--service-cluster-ip-range", "10.96.0.0/16",
		// No controller manager creates service accounts, so pods must not need one.
		"--disable-admission-plugins", "ServiceAccount",
		// CNI DaemonSets run privileged; every cluster that runs one allows it
		"--allow-privileged=true",
	}
	if opts.AuditPolicyFile != "" && opts.AuditLogPath != "" {
		apiArgs = append(apiArgs, "--audit-policy-file", opts.AuditPolicyFile, "--audit-log-path", opts.AuditLogPath,
			// 0 would mean lumberjack's default, a rotation every 100 MB: no rotation,
			// so a reader can count from an offset
			"--audit-log-format", "json", "--audit-log-maxsize", "1000000")
	}
	apiArgs = append(apiArgs, opts.ExtraAPIServerArgs...)
	cp.APIServer, err = StartProcess("kube-apiserver", filepath.Join(CacheBinDir(), "kube-apiserver"), apiArgs,
		filepath.Join(logDir, "kube-apiserver.log"))
	if err != nil {
		return err
	}
	cp.Config = &rest.Config{
		Host:            "https://127.0.0.1:" + apiPort,
		BearerToken:     creds.token,
		TLSClientConfig: rest.TLSClientConfig{CAData: creds.caPEM},
		// client-go's default 5 QPS would make the benchmark measure the
		// client-side rate limiter instead of underpool.
		QPS:   1000,
		Burst: 2000,
	}
	if err := writeKubeconfig(cp.KubeconfigPath, cp.Config); err != nil {
		return err
	}
	cs, err := kubernetes.NewForConfig(cp.Config)
	if err != nil {
		return err
	}
	procs := []*Process{cp.Etcd, cp.APIServer}
	if err := waitUntil(ctx, "kube-apiserver /readyz", procs, func(ctx context.Context) error {
		_, err := cs.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		return err
	}); err != nil {
		return err
	}
	// /readyz can pass before the system namespaces controller has created
	// "default"; tests create objects there right away.
	if err := waitUntil(ctx, `namespace "default"`, procs, func(ctx context.Context) error {
		_, err := cs.CoreV1().Namespaces().Get(ctx, metav1.NamespaceDefault, metav1.GetOptions{})
		return err
	}); err != nil {
		return err
	}

	defaults, err := ReadCRDs(DefaultCRDPaths(), true)
	if err != nil {
		return err
	}
	extra, err := ReadCRDs(opts.CRDPaths, false)
	if err != nil {
		return err
	}
	if err := InstallCRDs(ctx, cp.Config, append(defaults, extra...)); err != nil {
		return err
	}
	if opts.Lifecycle {
		return cp.startLifecycle(ctx, logDir, creds.saKey, cs)
	}
	return nil
}

// Client returns a controller-runtime client knowing the client-go types,
// apiextensions/v1 and whatever the given functions add (e.g. our CRD types'
// AddToScheme).
func (cp *ControlPlane) Client(addToScheme ...func(*runtime.Scheme) error) (client.Client, error) {
	scheme := runtime.NewScheme()
	adders := append([]func(*runtime.Scheme) error{clientgoscheme.AddToScheme, apiextensionsv1.AddToScheme}, addToScheme...)
	for _, add := range adders {
		if err := add(scheme); err != nil {
			return nil, err
		}
	}
	return client.New(cp.Config, client.Options{Scheme: scheme})
}

// Stop stops the scheduler and controller manager (if running), the
// apiserver, then etcd, then removes Dir. It is safe to call more than once
// and from StopOnInterrupt and a defer at the same time.
func (cp *ControlPlane) Stop() error {
	cp.stopOnce.Do(func() {
		var errs []error
		for _, p := range []*Process{cp.Scheduler, cp.ControllerManager, cp.APIServer, cp.Etcd} {
			if p == nil {
				continue
			}
			err := p.Stop()
			// kube-scheduler without leader election exits 1 after SIGTERM by design
			// ("finished without leader elect", cmd/kube-scheduler/app/server.go)
			if err != nil && p == cp.Scheduler && strings.Contains(tail(p.LogPath, 5), "finished without leader elect") {
				err = nil
			}
			errs = append(errs, err)
		}
		errs = append(errs, os.RemoveAll(cp.Dir))
		cp.stopErr = errors.Join(errs...)
	})
	return cp.stopErr
}

// waitUntil polls check until it succeeds, ctx ends, or one of procs exits;
// the error then carries the last check error and the dead process' log tail.
func waitUntil(ctx context.Context, what string, procs []*Process, check func(context.Context) error) error {
	var last error
	err := wait.PollUntilContextCancel(ctx, 100*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		for _, p := range procs {
			if exited, err := p.Exited(); exited {
				return false, fmt.Errorf("%s exited (%v) while waiting for %s; end of %s:\n%s",
					p.Name, err, what, p.LogPath, tail(p.LogPath, 20))
			}
		}
		last = check(ctx)
		return last == nil, nil
	})
	if err != nil && last != nil && ctx.Err() != nil {
		return fmt.Errorf("waiting for %s: %w (last error: %v)", what, err, last)
	}
	return err
}

func etcdHealthy(ctx context.Context, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+"/health", nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"true"`) {
		return fmt.Errorf("etcd /health: %s %s", resp.Status, body)
	}
	return nil
}

// tail returns the last n lines of a log file, for error messages.
func tail(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
