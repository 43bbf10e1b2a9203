package server_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
	"golang.org/x/sys/unix"

	"github.com/underpool/underpool/ipamd/server"
	"github.com/underpool/underpool/rpc"
)

func TestPeersAdmit(t *testing.T) {
	for _, tc := range []struct {
		name     string
		peers    server.Peers
		uid, gid uint32
		admit    bool
	}{
		{"root, root only", server.RootOnly, 0, 0, true},
		{"root with another group", server.RootOnly, 0, 1000, true},
		{"non-root, root only", server.RootOnly, 1000, 1000, false},
		{"non-root in the socket group", server.Peers{Group: 1000}, 1000, 1000, true},
		{"non-root outside the socket group", server.Peers{Group: 1000}, 1001, 1001, false},
		{"non-root with gid 0 but no group configured", server.RootOnly, 1000, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.peers.Admit(tc.uid, tc.gid)
			if (err == nil) != tc.admit {
				t.Fatalf("Admit(%d, %d) = %v, want admitted %v", tc.uid, tc.gid, err, tc.admit)
			}
			if err != nil && !strings.Contains(err.Error(), "uid") {
				t.Fatalf("refusal %q does not name the peer", err)
			}
		})
	}
}

// dialAs connects to socket from a thread whose effective uid and gid are uid and gid, so
// the kernel records them as the peer's credentials (SO_PEERCRED), then sends a status
// request. Linux credentials are per thread; the thread is locked and restored after.
func dialAs(t *testing.T, socket string, uid, gid int) error {
	t.Helper()
	runtime.LockOSThread()
	restore := func() {
		_, _, e1 := syscall.RawSyscall(unix.SYS_SETRESUID, ^uintptr(0), 0, ^uintptr(0))
		_, _, e2 := syscall.RawSyscall(unix.SYS_SETRESGID, ^uintptr(0), 0, ^uintptr(0))
		if e1 != 0 || e2 != 0 {
			t.Fatalf("could not restore the thread's credentials: %v %v", e1, e2) // the thread stays locked and dies with the test goroutine
		}
		runtime.UnlockOSThread()
	}
	if _, _, e := syscall.RawSyscall(unix.SYS_SETRESGID, ^uintptr(0), uintptr(gid), ^uintptr(0)); e != 0 {
		restore()
		t.Fatalf("setresgid: %v", e)
	}
	if _, _, e := syscall.RawSyscall(unix.SYS_SETRESUID, ^uintptr(0), uintptr(uid), ^uintptr(0)); e != 0 {
		restore()
		t.Fatalf("setresuid: %v", e)
	}
	conn, err := net.DialTimeout("unix", socket, 5*time.Second)
	restore()
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	hc := &http.Client{Transport: &http.Transport{DialContext: func(context.Context, string, string) (net.Conn, error) { return conn, nil }}}
	resp, err := hc.Get("http://ipamd" + rpc.PathStatus)
	if err != nil {
		return err
	}
	resp.Body.Close()
	return nil
}

// The socket checks who connects (SO_PEERCRED), not only the file's mode: with the file
// opened to everyone (a chmod, a careless mount), a non-root process is still refused,
// with the reason logged, while root and the configured group are served.
func TestSocketRefusesPeersByCredentials(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: it connects as other users to prove they are refused")
	}
	for _, tc := range []struct {
		name     string
		peers    *server.Peers
		uid, gid int
		admit    bool
	}{
		{"root", nil, 0, 0, true},
		{"nobody, root only", nil, 65534, 65534, false},
		{"nobody in the socket group", &server.Peers{Group: 65534}, 65534, 65534, true},
		{"another user, not in the socket group", &server.Peers{Group: 65534}, 4242, 4242, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, svc, _ := serve(t)
			dir, err := os.MkdirTemp("", "underpool-peer-") // t.TempDir's parent is root's alone
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.RemoveAll(dir) })
			if err := os.Chmod(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			socket := filepath.Join(dir, "ipamd.sock")
			l, err := server.Listen(socket, -1)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(socket, 0o666); err != nil { // the file no longer protects it
				t.Fatal(err)
			}
			core, logs := observer.New(zap.WarnLevel)
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- (&server.Server{Service: svc, Log: zap.New(core), Peers: tc.peers}).Serve(ctx, l) }()
			defer func() {
				cancel()
				if err := <-done; err != nil && !errors.Is(err, http.ErrServerClosed) {
					t.Errorf("Serve: %v", err)
				}
			}()
			err = dialAs(t, socket, tc.uid, tc.gid)
			if tc.admit && err != nil {
				t.Fatalf("uid %d was refused: %v", tc.uid, err)
			}
			if !tc.admit {
				if err == nil {
					t.Fatalf("uid %d was served", tc.uid)
				}
				refusals := logs.FilterMessage("socket connection refused").All()
				if len(refusals) != 1 || !strings.Contains(refusals[0].ContextMap()["reason"].(string), "uid") {
					t.Fatalf("want one logged refusal naming the uid, got %+v", logs.All())
				}
			}
		})
	}
}

// --socket-group opens the socket file to one group (0660) and no one else.
func TestSocketGroupMode(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to give the socket to a group")
	}
	socket := filepath.Join(t.TempDir(), "ipamd.sock")
	l, err := server.Listen(socket, 65534)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	fi, err := os.Stat(socket)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	if fi.Mode().Perm() != 0o660 || st.Uid != 0 || st.Gid != 65534 {
		t.Fatalf("socket mode %o owner %d:%d, want 660 0:65534", fi.Mode().Perm(), st.Uid, st.Gid)
	}
}
