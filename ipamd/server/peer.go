package server

import (
	"errors"
	"fmt"
	"net"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"
)

// Peers says who may use the socket. The socket file's mode is the first gate; the kernel's
// record of the connecting process (SO_PEERCRED, taken at connect time, not forgeable by
// the client) is the second, so a socket file made reachable by a mount or a chmod still
// serves only root and the configured group.
type Peers struct {
	// Group, when set (>= 0), also admits processes whose effective group is this gid.
	// SO_PEERCRED carries the primary group only: supplementary groups do not count.
	Group int
}

// RootOnly admits uid 0 alone.
var RootOnly = Peers{Group: -1}

// Admit reports why a peer is refused, or nil.
func (p Peers) Admit(uid, gid uint32) error {
	if uid == 0 || (p.Group >= 0 && gid == uint32(p.Group)) {
		return nil
	}
	if p.Group >= 0 {
		return fmt.Errorf("peer uid %d gid %d is neither root nor in the socket group %d (--socket-group)", uid, gid, p.Group)
	}
	return fmt.Errorf("peer uid %d gid %d is not root (no --socket-group configured)", uid, gid)
}

// peerCred reads the connecting process's credentials from the kernel.
func peerCred(c net.Conn) (*unix.Ucred, error) {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return nil, errors.New("not a unix socket connection")
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return nil, err
	}
	var cred *unix.Ucred
	var credErr error
	if err := raw.Control(func(fd uintptr) {
		cred, credErr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return nil, err
	}
	return cred, credErr
}

// checkedListener closes every connection whose peer the policy refuses, before a byte of
// it is read, and logs why.
type checkedListener struct {
	net.Listener
	peers Peers
	log   *zap.Logger
}

func (l *checkedListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		cred, err := peerCred(c)
		if err == nil {
			if err = l.peers.Admit(cred.Uid, cred.Gid); err != nil {
				l.log.Warn("socket connection refused", zap.Int32("pid", cred.Pid), zap.Uint32("uid", cred.Uid),
					zap.Uint32("gid", cred.Gid), zap.String("reason", err.Error()))
			}
		} else {
			l.log.Warn("socket connection refused: peer credentials unreadable", zap.Error(err))
		}
		if err != nil {
			_ = c.Close()
			continue
		}
		return c, nil
	}
}
