package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"

	"github.com/containernetworking/cni/pkg/invoke"
	current "github.com/containernetworking/cni/pkg/types/100"

	"github.com/underpool/underpool/tests/harness/kubelet"
)

// ipamPlugin runs the underpool-ipam binary exactly as a main plugin calls its IPAM plugin
// (network config on stdin, CNI_* in the environment), with no link: the IPAM path alone.
type ipamPlugin struct {
	path string // the underpool-ipam binary
	work string // its log file and log directory go here
}

// podRef names the pod a call is for, as the runtime passes it in CNI_ARGS.
type podRef struct{ namespace, name, uid string }

// call runs one verb (ADD or DEL) for pod against the ipamd at socket, from pools; for an
// ADD it returns the one address handed out ("" when the result holds none or several).
func (p ipamPlugin) call(ctx context.Context, verb, socket, network string, pools []string, pod podRef) (string, error) {
	conf, _ := json.Marshal(map[string]any{"cniVersion": "1.1.0", "name": network, "type": "macvlan",
		"ipam": map[string]any{"type": "underpool-ipam", "socket": socket, "ipv4Pools": pools,
			"logFile": filepath.Join(p.work, "ipam-plugin.log"), "logLevel": "error"}})
	args := &invoke.Args{Command: verb, ContainerID: "ctr-" + pod.name, NetNS: "/var/run/netns/scale-none", IfName: "net1",
		PluginArgs: [][2]string{{"IgnoreUnknown", "1"}, {"K8S_POD_NAMESPACE", pod.namespace}, {"K8S_POD_NAME", pod.name},
			{"K8S_POD_UID", pod.uid}}, Path: filepath.Dir(p.path)}
	// the node's settings reach the plugin through the runtime's environment
	exec := envExec{Exec: &invoke.DefaultExec{RawExec: &invoke.RawExec{Stderr: os.Stderr}},
		env: []string{kubelet.IpamdSocketEnv + "=" + socket, kubelet.LogDirEnv + "=" + p.work}}
	if verb != "ADD" {
		return "", invoke.ExecPluginWithoutResult(ctx, p.path, conf, args, exec)
	}
	r, err := invoke.ExecPluginWithResult(ctx, p.path, conf, args, exec)
	if err != nil {
		return "", err
	}
	if res, err := current.GetResult(r); err == nil && len(res.IPs) == 1 {
		return res.IPs[0].Address.IP.String(), nil
	}
	return "", nil
}

// envExec appends entries to the environment a plugin gets.
type envExec struct {
	invoke.Exec
	env []string
}

func (e envExec) ExecPlugin(ctx context.Context, path string, stdin []byte, environ []string) ([]byte, error) {
	return e.Exec.ExecPlugin(ctx, path, stdin, append(append([]string(nil), environ...), e.env...))
}
