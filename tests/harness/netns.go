package harness

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"

	"github.com/containernetworking/plugins/pkg/ns"
)

// netnsDir is where `ip netns` keeps its bind-mounted namespace files.
const netnsDir = "/run/netns"

// NetNS is a named network namespace, created with `ip netns add` so that
// /run/netns/<name> exists and `ip netns exec <name> ...` works for humans
// and scripts as well as for us.
type NetNS struct {
	name      string
	closeOnce sync.Once
	closeErr  error
}

// NewNetNS creates the namespace; loopback starts down, as in a fresh pod
// sandbox before the runtime's loopback plugin runs.
func NewNetNS(name string) (*NetNS, error) {
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("ip netns add %s: %v: %s", name, err, strings.TrimSpace(string(out)))
	}
	return &NetNS{name: name}, nil
}

// Name is the `ip netns` name.
func (n *NetNS) Name() string { return n.name }

// Path is the bind-mount a CNI runtime passes as CNI_NETNS.
func (n *NetNS) Path() string { return filepath.Join(netnsDir, n.name) }

// Close deletes the namespace, and with it every link still inside it (veth
// peers in other namespaces go too). A namespace already gone is no error. The links
// are deleted first, synchronously: the kernel destroys a namespace in the background,
// and until it has, a macvlan inside still answers ARP for its address (a sandbox gone
// without DEL would seem to linger on the wire).
func (n *NetNS) Close() error {
	n.closeOnce.Do(func() {
		if _, err := os.Stat(n.Path()); errors.Is(err, os.ErrNotExist) {
			return
		}
		_ = deleteLinks(n.Path()) // best effort: the namespace's deletion removes them anyway
		if out, err := exec.Command("ip", "netns", "delete", n.name).CombinedOutput(); err != nil {
			if _, statErr := os.Stat(n.Path()); !errors.Is(statErr, os.ErrNotExist) {
				n.closeErr = fmt.Errorf("ip netns delete %s: %v: %s", n.name, err, strings.TrimSpace(string(out)))
			}
		}
	})
	return n.closeErr
}

// Run runs a command inside the namespace (`ip netns exec`) and returns its
// combined output.
func (n *NetNS) Run(name string, args ...string) (string, error) {
	cmd := exec.Command("ip", append([]string{"netns", "exec", n.name, name}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("ip netns exec %s %s %s: %w: %s",
			n.name, name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// Do runs fn on an OS thread switched into the namespace. ns.WithNetNSPath
// locks the thread and switches it back afterwards (or retires it if that
// fails), so the caller's goroutine never ends up in the wrong namespace.
// Prefer the netlink helpers, which need no switching at all.
func (n *NetNS) Do(fn func() error) error {
	return ns.WithNetNSPath(n.Path(), func(ns.NetNS) error { return fn() })
}

// pathOf maps an optional namespace to the path netlink helpers take;
// nil means the root (our own) namespace.
func pathOf(n *NetNS) string {
	if n == nil {
		return ""
	}
	return n.Path()
}

// nameOf is pathOf for messages.
func nameOf(n *NetNS) string {
	if n == nil {
		return "root netns"
	}
	return "netns " + n.name
}
