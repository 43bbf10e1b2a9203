package harness

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/types"
)

// CNI drives CNI plugins through libcni, the library container runtimes
// (containerd, CRI-O) use, so plugins see the same environment, stdin, result
// caching and prevResult chaining as under a real kubelet.
type CNI struct {
	// BinDirs are searched for plugin binaries; libcni also passes them to
	// every plugin as CNI_PATH, which is how chained and delegating plugins
	// (IPAM, multus delegates) find theirs.
	BinDirs []string
	// CacheDir holds libcni's result cache (needed by DEL, CHECK and GC).
	// Empty means libcni's default, /var/lib/cni: tests should set a temp dir.
	CacheDir string
	// NodeNetNS, when set, runs every plugin binary inside that network
	// namespace (nsenter --net=...), as if this were another node whose
	// uplinks live there. Empty runs plugins in our own namespace.
	NodeNetNS string
	// Stderr receives what plugins print on stderr; nil means os.Stderr.
	// (Plugins log to files; stdout carries the result and must stay clean.)
	Stderr io.Writer
	// Env are extra KEY=VALUE entries appended to every plugin's environment,
	// after ours and libcni's, so they win. A node's runtime sets such things
	// (UNDERPOOL_IPAMD_SOCKET: this node's ipamd); multus passes them on to
	// its delegates.
	Env []string
}

// Runtime is what a container runtime knows about one attachment.
type Runtime struct {
	ContainerID string // also sent as K8S_POD_INFRA_CONTAINER_ID
	NetNS       string // path of the pod's network namespace
	IfName      string // interface to create in it; default eth0

	PodNamespace, PodName, PodUID string // sent as K8S_POD_* in CNI_ARGS

	// Args are extra CNI_ARGS, appended after the standard ones.
	Args [][2]string
	// CapabilityArgs are runtimeConfig values (ips, mac, portMappings, ...),
	// passed to plugins that declare the capability.
	CapabilityArgs map[string]any
}

// Attachment identifies one attachment that is still in use, for GC.
type Attachment = types.GCAttachment

// Add runs ADD for the conflist and returns the final result.
func (c *CNI) Add(ctx context.Context, conflist []byte, rt Runtime) (types.Result, error) {
	cfg, list, err := c.prepare(conflist)
	if err != nil {
		return nil, err
	}
	return cfg.AddNetworkList(ctx, list, rt.conf())
}

// Del runs DEL, giving plugins the result cached at ADD as prevResult.
func (c *CNI) Del(ctx context.Context, conflist []byte, rt Runtime) error {
	cfg, list, err := c.prepare(conflist)
	if err != nil {
		return err
	}
	return cfg.DelNetworkList(ctx, list, rt.conf())
}

// Check runs CHECK against the cached ADD result.
func (c *CNI) Check(ctx context.Context, conflist []byte, rt Runtime) error {
	cfg, list, err := c.prepare(conflist)
	if err != nil {
		return err
	}
	return cfg.CheckNetworkList(ctx, list, rt.conf())
}

// Status runs STATUS (CNI 1.1+; libcni skips it for older cniVersions).
func (c *CNI) Status(ctx context.Context, conflist []byte) error {
	cfg, list, err := c.prepare(conflist)
	if err != nil {
		return err
	}
	return cfg.GetStatusNetworkList(ctx, list)
}

// GC runs DEL for every cached attachment of this network not listed in
// valid, then GC on each plugin (CNI 1.1+) with valid as cni.dev/valid-attachments.
func (c *CNI) GC(ctx context.Context, conflist []byte, valid []Attachment) error {
	cfg, list, err := c.prepare(conflist)
	if err != nil {
		return err
	}
	return cfg.GCNetworkList(ctx, list, &libcni.GCArgs{ValidAttachments: valid})
}

// prepare parses the conflist and builds a libcni config. A new CNIConfig
// per call is cheap and keeps CNI safe for concurrent use.
func (c *CNI) prepare(conflist []byte) (*libcni.CNIConfig, *libcni.NetworkConfigList, error) {
	list, err := libcni.NetworkConfFromBytes(conflist)
	if err != nil {
		return nil, nil, fmt.Errorf("parse conflist: %w", err)
	}
	stderr := c.Stderr
	if stderr == nil {
		stderr = os.Stderr
	}
	var exec invoke.Exec = &invoke.DefaultExec{RawExec: &invoke.RawExec{Stderr: stderr}}
	if c.NodeNetNS != "" {
		exec = &nsenterExec{netns: c.NodeNetNS, stderr: stderr}
	}
	if len(c.Env) > 0 {
		exec = &envExec{Exec: exec, env: c.Env}
	}
	return libcni.NewCNIConfigWithCacheDir(c.BinDirs, c.CacheDir, exec), list, nil
}

// conf converts to libcni's RuntimeConf. CNI_ARGS start with IgnoreUnknown=1,
// then the K8S_POD_* keys, in the order the kubelet's CRI runtimes use, so
// plugins that reject unknown keys keep working.
func (rt Runtime) conf() *libcni.RuntimeConf {
	ifName := rt.IfName
	if ifName == "" {
		ifName = "eth0"
	}
	args := [][2]string{{"IgnoreUnknown", "1"}}
	for _, kv := range [][2]string{
		{"K8S_POD_NAMESPACE", rt.PodNamespace},
		{"K8S_POD_NAME", rt.PodName},
		{"K8S_POD_INFRA_CONTAINER_ID", rt.ContainerID},
		{"K8S_POD_UID", rt.PodUID},
	} {
		if kv[1] != "" {
			args = append(args, kv)
		}
	}
	args = append(args, rt.Args...)
	return &libcni.RuntimeConf{
		ContainerID:    rt.ContainerID,
		NetNS:          rt.NetNS,
		IfName:         ifName,
		Args:           args,
		CapabilityArgs: rt.CapabilityArgs,
	}
}

// envExec appends fixed entries to the environment libcni built for a plugin.
// os/exec keeps the last of duplicate keys, so these override inherited ones.
type envExec struct {
	invoke.Exec
	env []string
}

func (e *envExec) ExecPlugin(ctx context.Context, pluginPath string, stdin []byte, environ []string) ([]byte, error) {
	return e.Exec.ExecPlugin(ctx, pluginPath, stdin, append(append([]string(nil), environ...), e.env...))
}
