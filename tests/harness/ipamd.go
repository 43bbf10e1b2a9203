package harness

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"github.com/underpool/underpool/rpc"
)

// IpamdOptions start one ipamd, standing for the daemon of one node.
type IpamdOptions struct {
	Bin        string // ipamd binary
	Kubeconfig string
	NodeName   string
	Socket     string
	LogPath    string
	// HealthAddress for /metrics; empty disables it (many ipamds share one host).
	HealthAddress string
	ExtraArgs     []string
}

// Ipamd is a running ipamd.
type Ipamd struct {
	*Process
	Options IpamdOptions
	Client  *rpc.Client
}

// StartIpamd starts ipamd and waits until it serves allocations: caches synced and this
// node's Endpoints reconciled.
func StartIpamd(opts IpamdOptions) (*Ipamd, error) {
	args := []string{"--kubeconfig", opts.Kubeconfig, "--node-name", opts.NodeName, "--socket", opts.Socket,
		"--health-address", opts.HealthAddress, "--log-level", "info"}
	p, err := StartProcess("ipamd-"+opts.NodeName, opts.Bin, append(args, opts.ExtraArgs...), opts.LogPath)
	if err != nil {
		return nil, err
	}
	d := &Ipamd{Process: p, Options: opts, Client: rpc.NewClient(opts.Socket)}
	if err := d.WaitReady(60 * time.Second); err != nil {
		_ = p.Stop()
		return nil, err
	}
	return d, nil
}

// WaitReady polls the socket's status until ipamd reports ready.
func (d *Ipamd) WaitReady(timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var last string
	for {
		if exited, err := d.Exited(); exited {
			return fmt.Errorf("ipamd %s exited: %v\n%s", d.Options.NodeName, err, tail(d.Options.LogPath, 20))
		}
		st, err := d.Client.Status(ctx)
		if err == nil && st.Ready {
			return nil
		}
		if err != nil {
			last = err.Error()
		} else {
			last = st.Reason
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("ipamd %s not ready after %s: %s\n%s", d.Options.NodeName, timeout, last, tail(d.Options.LogPath, 20))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Restart stops ipamd and starts it again with the same options.
func (d *Ipamd) Restart() error {
	if err := d.Stop(); err != nil {
		return err
	}
	fresh, err := StartIpamd(d.Options)
	if err != nil {
		return err
	}
	*d = *fresh
	return nil
}

// DefaultIpamdOptions fills the paths for a node's ipamd under dir.
func DefaultIpamdOptions(binDir, kubeconfig, node, dir string) IpamdOptions {
	return IpamdOptions{
		Bin:        filepath.Join(binDir, "ipamd"),
		Kubeconfig: kubeconfig,
		NodeName:   node,
		Socket:     filepath.Join(dir, node+".sock"),
		LogPath:    filepath.Join(dir, "ipamd-"+node+".log"),
	}
}
