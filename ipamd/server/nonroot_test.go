package server_test

import (
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/underpool/underpool/ipamd/server"
)

// The uid and gid the manifests run ipamd as, and two other groups.
const (
	ipamdUID, ipamdGID = 65532, 65532
	socketGID          = 4242
	strangerGID        = 4343
)

// asUser runs fn on a thread whose effective uid, gid and supplementary groups are the
// given ones, as ipamd runs in its container: a non-root euid has no effective
// capability (no CAP_CHOWN, no CAP_DAC_OVERRIDE). Credentials are per thread on Linux;
// the thread is locked and restored after.
func asUser(t *testing.T, uid, gid int, groups []int, fn func()) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to act as another user")
	}
	saved, err := unix.Getgroups()
	if err != nil {
		t.Fatal(err)
	}
	runtime.LockOSThread()
	restore := func() {
		_, _, e1 := syscall.RawSyscall(unix.SYS_SETRESUID, ^uintptr(0), 0, ^uintptr(0))
		_, _, e2 := syscall.RawSyscall(unix.SYS_SETRESGID, ^uintptr(0), 0, ^uintptr(0))
		e3 := setThreadGroups(saved)
		if e1 != 0 || e2 != 0 || e3 != 0 {
			t.Fatalf("could not restore the thread's credentials: %v %v %v", e1, e2, e3) // the thread stays locked and dies with the test goroutine
		}
		runtime.UnlockOSThread()
	}
	defer restore()
	if e := setThreadGroups(groups); e != 0 {
		t.Fatalf("setgroups: %v", e)
	}
	if _, _, e := syscall.RawSyscall(unix.SYS_SETRESGID, ^uintptr(0), uintptr(gid), ^uintptr(0)); e != 0 {
		t.Fatalf("setresgid: %v", e)
	}
	if _, _, e := syscall.RawSyscall(unix.SYS_SETRESUID, ^uintptr(0), uintptr(uid), ^uintptr(0)); e != 0 {
		t.Fatalf("setresuid: %v", e)
	}
	fn()
}

// setThreadGroups sets the calling thread's supplementary groups alone (the syscall is
// per thread; syscall.Setgroups changes every thread of the process).
func setThreadGroups(groups []int) syscall.Errno {
	gids := make([]uint32, len(groups))
	for i, g := range groups {
		gids[i] = uint32(g)
	}
	var p unsafe.Pointer
	if len(gids) > 0 {
		p = unsafe.Pointer(&gids[0])
	}
	_, _, e := syscall.RawSyscall(unix.SYS_SETGROUPS, uintptr(len(gids)), uintptr(p), 0)
	return e
}

// socketDir makes a directory as the node would have it: mode with the given owner.
func socketDir(t *testing.T, uid, gid int, mode os.FileMode) string {
	t.Helper()
	parent, err := os.MkdirTemp("", "underpool-socket-") // t.TempDir's parent is root's alone
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(parent) })
	dir := filepath.Join(parent, "run")
	for _, step := range []func() error{
		func() error { return os.Mkdir(dir, 0o700) },
		func() error { return os.Chown(dir, uid, gid) },
		func() error { return os.Chmod(parent, 0o755) },
		func() error { return os.Chmod(dir, mode) }, // after the chown, which may clear setgid
	} {
		if err := step(); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// listenAs opens the socket as ipamd in the manifests (uid and gid 65532, the given
// supplementary groups, no capability); it stays open until the test ends.
func listenAs(t *testing.T, socket string, group int, groups []int) error {
	t.Helper()
	var l net.Listener
	var err error
	asUser(t, ipamdUID, ipamdGID, groups, func() { l, err = server.Listen(socket, group) })
	if err == nil {
		t.Cleanup(func() { l.Close() })
	}
	return err
}

func socketStat(t *testing.T, path string) (os.FileMode, *syscall.Stat_t) {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm(), fi.Sys().(*syscall.Stat_t)
}

// ipamd as a non-root user with no capability opens its socket in the directory the
// installer left (root's, its group ipamd's, setgid), both root-only and with
// --socket-group: the socket takes the directory's group, nothing is chowned.
func TestNonRootIpamdOpensItsSocketInTheInstallersDirectory(t *testing.T) {
	for _, group := range []int{-1, ipamdGID} {
		dir := socketDir(t, 0, ipamdGID, 0o775|os.ModeSetgid)
		socket := filepath.Join(dir, "ipamd.sock")
		if err := os.WriteFile(socket, nil, 0o600); err != nil { // a root-owned one from an older ipamd
			t.Fatal(err)
		}
		if err := listenAs(t, socket, group, nil); err != nil {
			t.Fatalf("--socket-group %d: %v", group, err)
		}
		want := os.FileMode(0o600)
		if group >= 0 {
			want = 0o660
		}
		if mode, st := socketStat(t, socket); mode != want || st.Uid != ipamdUID || st.Gid != ipamdGID {
			t.Fatalf("--socket-group %d: socket mode %o owner %d:%d, want %o %d:%d", group, mode, st.Uid, st.Gid, want, ipamdUID, ipamdGID)
		}
	}
}

// A --socket-group other than ipamd's own is given by ipamd as the socket's owner, which
// needs no CAP_CHOWN when ipamd is in the group (supplementalGroups); outside it, the
// error names the group, ipamd's ids and both fixes.
func TestNonRootIpamdGivesItsSocketToAGroupItIsIn(t *testing.T) {
	dir := socketDir(t, 0, ipamdGID, 0o775|os.ModeSetgid)
	socket := filepath.Join(dir, "ipamd.sock")
	if err := listenAs(t, socket, socketGID, []int{socketGID}); err != nil {
		t.Fatal(err)
	}
	if mode, st := socketStat(t, socket); mode != 0o660 || st.Uid != ipamdUID || st.Gid != socketGID {
		t.Fatalf("socket mode %o owner %d:%d, want 660 %d:%d", mode, st.Uid, st.Gid, ipamdUID, socketGID)
	}
	err := listenAs(t, socket, strangerGID, []int{socketGID})
	for _, want := range []string{"--socket-group 4343", "uid 65532", "supplementalGroups", "--socket-dir-group"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not say %q", err, want)
		}
	}
}
