package cniinstall

import (
	"fmt"
	"io"
	"os"
	"syscall"
)

// SocketDirMode is what PrepareSocketDir leaves the socket directory: the group may make
// and replace files (ipamd's socket), which take the directory's group (setgid); anyone
// may pass through it to a socket whose own mode admits them (--socket-group).
const SocketDirMode = 0o775 | os.ModeSetgid

// PrepareSocketDir readies the directory of ipamd's socket (the host's /run/underpool)
// for an ipamd running as a non-root user with no capability: the directory goes to group
// gid, ipamd's, with SocketDirMode. The installer needs no capability for this either: it
// runs as root, which owns the directory the kubelet made, and an owner may give its file
// to any group it is in (the pod's supplementalGroups) without CAP_CHOWN.
func PrepareSocketDir(dir string, gid int, out io.Writer) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("--socket-dir %s: %w", dir, err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("--socket-dir %s: %w", dir, err)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); !ok || int(st.Gid) != gid {
		if err := os.Chown(dir, -1, gid); err != nil {
			return fmt.Errorf("--socket-dir %s: giving it to --socket-dir-group %d: %w: the installer (uid %d) must own it and be in "+
				"that group: add the gid to the pod's securityContext.supplementalGroups", dir, gid, err, os.Geteuid())
		}
	}
	// after the chown, which may clear the setgid bit
	if err := os.Chmod(dir, SocketDirMode); err != nil {
		return fmt.Errorf("--socket-dir %s: %w", dir, err)
	}
	fmt.Fprintf(out, "socket directory %s: group %d, mode %s\n", dir, gid, SocketDirMode)
	return nil
}
