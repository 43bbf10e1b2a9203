package kubelet

import (
	"fmt"
	"io"
	"os"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/client-go/rest"

	"github.com/underpool/underpool/chain/ipamplugin"
	"github.com/underpool/underpool/tests/harness"
)

// IgnoreSIGTERMAnnotation, set to "true" on a pod, makes its simulated
// containers ignore SIGTERM: on deletion the stand-in waits the full grace
// period (until the pod's deletionTimestamp) before it tears the sandbox
// down, as a kubelet must for such a container. Without it the containers
// exit at once, like pause does.
const IgnoreSIGTERMAnnotation = "kubelet.underpool.test/ignore-sigterm"

// IpamdSocketEnv is the variable the underpool plugin reads for its node's
// ipamd socket; the stand-in sets it for every plugin it runs.
const IpamdSocketEnv = ipamplugin.SocketEnv

// LogDirEnv is the variable that moves the plugin's log directory (a network config's
// logFile must lie under it): tests set it in CNI.Env to keep plugin logs in a temp dir.
const LogDirEnv = ipamplugin.LogDirEnv

// Config describes one simulated node.
type Config struct {
	// NodeName is the Node this stand-in registers and serves. Required.
	NodeName string
	// RestConfig reaches the apiserver. Required.
	RestConfig *rest.Config
	// CNI is how plugins are run (BinDirs, CacheDir, ...). It is copied; the
	// stand-in adds IpamdSocket to the copy's Env.
	CNI harness.CNI
	// Conflist is the node's CNI network config, normally the multus thin
	// plugin (see MultusConflist). Required.
	Conflist []byte
	// NodeNetNS, when set, is the network namespace standing for this node: multus and
	// the plugins run inside it (CNI.NodeNetNS), so the node's uplinks, the host veth of
	// host connectivity, its routes and any node-side rule are real there, and the
	// machine's own namespace is left alone. The stand-in forwards the apiserver's
	// loopback address (RestConfig.Host, which the multus kubeconfig must name too) into
	// it. The caller makes and removes it; it needs no link but loopback.
	NodeNetNS *harness.NetNS
	// IpamdSocket is this node's ipamd socket, given to plugins as
	// UNDERPOOL_IPAMD_SOCKET. Empty leaves the NAD's ipam.socket in charge.
	IpamdSocket string

	// Labels are added to kubernetes.io/hostname and kubernetes.io/os=linux.
	Labels map[string]string
	// Capacity is the node's capacity and allocatable; missing cpu, memory
	// and pods get 32, 128Gi and 250.
	Capacity corev1.ResourceList
	// NodeIP is the node's InternalIP and the pods' hostIP (default 127.0.0.1).
	NodeIP string

	// LeaseInterval is how often the node Lease is renewed (default 1s) and
	// StatusInterval how often the Ready heartbeat is posted (default 4s).
	LeaseInterval, StatusInterval time.Duration
	// MaxParallelCNI bounds concurrent CNI ADD/DEL calls (default 8), as a
	// runtime's sandbox creation is bounded; Workers is how many pods are
	// handled at once (default 16). One pod's work is always serialised.
	MaxParallelCNI, Workers int
	// CNITimeout bounds one CNI call (default 2 min).
	CNITimeout time.Duration
	// Log receives the stand-in's log lines; nil means os.Stderr.
	Log io.Writer
}

func (c *Config) setDefaults() error {
	if c.NodeName == "" || c.RestConfig == nil || len(c.Conflist) == 0 {
		return fmt.Errorf("kubelet config: NodeName, RestConfig and Conflist are required")
	}
	if c.NodeIP == "" {
		c.NodeIP = "127.0.0.1"
	}
	caps := corev1.ResourceList{}
	for name, q := range c.Capacity {
		caps[name] = q
	}
	for name, def := range map[corev1.ResourceName]string{
		corev1.ResourceCPU: "32", corev1.ResourceMemory: "128Gi", corev1.ResourcePods: "250",
	} {
		if _, ok := caps[name]; !ok {
			caps[name] = resource.MustParse(def)
		}
	}
	c.Capacity = caps
	if c.LeaseInterval == 0 {
		c.LeaseInterval = time.Second
	}
	if c.StatusInterval == 0 {
		c.StatusInterval = 4 * time.Second
	}
	if c.MaxParallelCNI == 0 {
		c.MaxParallelCNI = 8
	}
	if c.Workers == 0 {
		c.Workers = 16
	}
	if c.CNITimeout == 0 {
		c.CNITimeout = 2 * time.Minute
	}
	if c.Log == nil {
		c.Log = os.Stderr
	}
	if c.NodeNetNS != nil {
		c.CNI.NodeNetNS = c.NodeNetNS.Path()
	}
	c.CNI.Env = slices.Clone(c.CNI.Env)
	if c.IpamdSocket != "" {
		c.CNI.Env = append(c.CNI.Env, IpamdSocketEnv+"="+c.IpamdSocket)
	}
	return nil
}
