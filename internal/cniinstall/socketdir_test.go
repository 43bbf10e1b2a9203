package cniinstall

import (
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

const ipamdGID = 65532 // the gid the manifests run ipamd as

// withoutCapabilities runs fn on a thread that is root with no effective capability and
// the given supplementary groups, as the init container runs (runAsUser 0, capabilities
// drop ALL, the pod's supplementalGroups). Capabilities and groups are per thread on
// Linux; the thread is locked and restored after.
func withoutCapabilities(t *testing.T, groups []int, fn func()) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	saved, err := unix.Getgroups()
	if err != nil {
		t.Fatal(err)
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var caps [2]unix.CapUserData
	if err := unix.Capget(&hdr, &caps[0]); err != nil {
		t.Fatal(err)
	}
	runtime.LockOSThread()
	defer func() {
		err := unix.Capset(&hdr, &caps[0])
		if e := setThreadGroups(saved); err == nil && e != 0 {
			err = e
		}
		if err != nil {
			t.Fatalf("could not restore the thread: %v", err) // it stays locked and dies with the test goroutine
		}
		runtime.UnlockOSThread()
	}()
	if e := setThreadGroups(groups); e != 0 {
		t.Fatalf("setgroups: %v", e)
	}
	none := caps
	none[0].Effective, none[1].Effective = 0, 0
	if err := unix.Capset(&hdr, &none[0]); err != nil {
		t.Fatalf("capset: %v", err)
	}
	fn()
}

// setThreadGroups sets the calling thread's supplementary groups alone.
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

// The init container, root with no capability, gives the kubelet's root-owned
// /run/underpool to ipamd's group with the setgid bit; a socket ipamd (uid 65532, no
// capability) makes there then takes that group.
func TestSocketDirIsGivenToIpamdsGroupWithoutCapabilities(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "run", "underpool")
	if err := os.MkdirAll(dir, 0o755); err != nil { // as hostPath DirectoryOrCreate leaves it
		t.Fatal(err)
	}
	var err error
	withoutCapabilities(t, []int{ipamdGID}, func() { err = PrepareSocketDir(dir, ipamdGID, io.Discard) })
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if st := fi.Sys().(*syscall.Stat_t); fi.Mode()&(os.ModePerm|os.ModeSetgid) != SocketDirMode || st.Uid != 0 || st.Gid != ipamdGID {
		t.Fatalf("socket dir mode %v owner %d:%d, want %v 0:%d", fi.Mode(), st.Uid, st.Gid, SocketDirMode, ipamdGID)
	}
	// a second run (the init container runs on every pod start) changes nothing
	withoutCapabilities(t, []int{ipamdGID}, func() { err = PrepareSocketDir(dir, ipamdGID, io.Discard) })
	if err != nil {
		t.Fatalf("second run: %v", err)
	}
	// what ipamd makes there is its group's (ipamd's own test: ipamd/server); a file
	// stands for the socket
	made := filepath.Join(dir, "ipamd.sock")
	if err := os.WriteFile(made, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(made); err != nil || fi.Sys().(*syscall.Stat_t).Gid != ipamdGID {
		t.Fatalf("a file made in the socket dir: %v, group %v, want %d", err, fi.Sys().(*syscall.Stat_t).Gid, ipamdGID)
	}
}

// Outside the group, the installer says what to add to the pod.
func TestSocketDirGroupTheInstallerIsNotInNamesTheFix(t *testing.T) {
	dir := t.TempDir()
	var err error
	withoutCapabilities(t, nil, func() { err = PrepareSocketDir(dir, ipamdGID, io.Discard) })
	for _, want := range []string{"--socket-dir-group 65532", "supplementalGroups"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not say %q", err, want)
		}
	}
}
