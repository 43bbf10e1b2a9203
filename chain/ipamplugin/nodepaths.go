package ipamplugin

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/underpool/underpool/rpc"
)

// Paths on the node are the node's settings. The plugin runs as root on every node, and
// a network config usually comes from a NetworkAttachmentDefinition that a namespace
// admin may write: a path field there would let them create or append to any root file
// on every node. So the path fields of a network config may only pick a place under a
// fixed root, and the roots (and the ipamd socket) are moved only through the plugin's
// environment, which the container runtime sets and multus passes on.
const (
	// SocketEnv, when set, is the node's ipamd socket and wins over ipam.socket: which
	// daemon a node talks to is the node's setting, and a cluster-wide
	// NetworkAttachmentDefinition must not decide it (the runtime, and multus after it,
	// pass their environment on to the plugin).
	SocketEnv = "UNDERPOOL_IPAMD_SOCKET"
	// SocketRoot holds every ipamd socket a network config may name (ipam.socket);
	// SocketEnv names any other.
	SocketRoot = "/run/underpool"
	// LogDirEnv, when set, is the directory the plugin logs under instead of
	// DefaultLogDir: logFile must lie below it and defaults to underpool.log in it.
	LogDirEnv      = "UNDERPOOL_LOG_DIR"
	DefaultLogDir  = "/var/log/underpool"
	DefaultLogFile = DefaultLogDir + "/underpool.log"
)

// logDir is the node's log directory.
func logDir() string {
	if d := os.Getenv(LogDirEnv); d != "" {
		return filepath.Clean(d)
	}
	return DefaultLogDir
}

// Confine checks that a path from a network config lies strictly below root and returns
// it cleaned; the error names the field, the root and how the node moves it (fix).
func Confine(field, path, root, fix string) (string, error) {
	refuse := func(why string) error {
		return fmt.Errorf("%s %q %s: a network config may only name a path under %s/ (the plugin acts there as root on every node); %s",
			field, path, why, root, fix)
	}
	if !filepath.IsAbs(path) {
		return "", refuse("is not an absolute path")
	}
	clean := filepath.Clean(path)
	rel, err := filepath.Rel(root, clean)
	if err != nil || rel == "." || rel == ".." || strings.HasPrefix(rel, "../") {
		return "", refuse("is outside " + root + "/")
	}
	return clean, nil
}

// loadPaths settles the node paths of a config: the environment first, then a config
// value confined to its root, then the default.
func (c *NetConf) loadPaths() error {
	var err error
	switch s := os.Getenv(SocketEnv); {
	case s != "":
		c.IPAM.Socket = s // the node's own socket: the config's value is not used
	case c.IPAM.Socket == "":
		c.IPAM.Socket = rpc.DefaultSocket
	default:
		if c.IPAM.Socket, err = Confine("ipam.socket", c.IPAM.Socket, SocketRoot,
			"leave it out, or set "+SocketEnv+" in the container runtime's environment"); err != nil {
			return err
		}
	}
	dir := logDir()
	if c.LogFile == "" {
		c.LogFile = filepath.Join(dir, "underpool.log")
	} else if c.LogFile, err = Confine("logFile", c.LogFile, dir,
		"leave it out, or set "+LogDirEnv+" in the container runtime's environment to move the directory"); err != nil {
		return err
	}
	return nil
}
