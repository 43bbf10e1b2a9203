package chain

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// UplinkStateDir records which attachments hang off which uplink link (bond, VLAN
// interface), so the DEL of the last one removes a link ADD made, and holds the per-link
// locks ADD, DEL and GC take. A pod's link lives in the pod's netns, where the node cannot
// see it: these records are the only count of a link's users. The kernel deletes every
// macvlan and ipvlan on a link that goes, so a link goes only when its count is zero.
const UplinkStateDir = StateRoot + "/uplinks"

// uplinkLink is one link of an attachment's uplink: Key names it in the records and locks
// (<bond> or <base>.<vlan>, the same whatever the operator called an existing VLAN
// interface), Name is the interface.
type uplinkLink struct {
	Key  string `json:"key"`
	Name string `json:"name"`
}

// uplinkRecord is one attachment on an uplink: what DEL gives back and CHECK runs with.
type uplinkRecord struct {
	Network     string `json:"network"`
	ContainerID string `json:"containerID"`
	IfName      string `json:"ifName"`
	// Master is the link the delegate hung the pod's link off.
	Master string `json:"master"`
	// Links, bottom first: the bond, then the VLAN interface.
	Links []uplinkLink `json:"links"`

	written time.Time // the record file's mtime, for GC
}

// uplinkStore is the directory: attachments/<attachment>.json (the records),
// links/<key>/<attachment> (each link's users), locks/<key>.lock (attachmentKey names an
// attachment).
type uplinkStore struct{ dir string }

// newUplinkStore is swapped in tests.
var newUplinkStore = func() uplinkStore { return uplinkStore{dir: UplinkStateDir} }

// attachmentKey names an attachment's files: <containerID>:<ifName>, one per attachment
// since neither a CNI container ID nor an interface name holds a ':' (refused here, as a
// '/' is, so no two attachments share a record and none lands outside its directory).
func attachmentKey(containerID, ifName string) (string, error) {
	if containerID == "" || strings.ContainsAny(containerID+ifName, "/:\x00") {
		return "", fmt.Errorf("container ID %q and interface %q cannot name a record", containerID, ifName)
	}
	return containerID + ":" + ifName, nil
}

func (s uplinkStore) recordPath(key string) string {
	return filepath.Join(s.dir, "attachments", key+".json")
}

func (s uplinkStore) usersDir(link string) string { return filepath.Join(s.dir, "links", link) }

// lock takes the locks of keys in order (callers pass them bottom first, so two verbs
// never wait on each other crosswise), waiting while ctx allows; unlock releases them.
func (s uplinkStore) lock(ctx context.Context, keys []string) (unlock func(), err error) {
	var held []*os.File
	unlock = func() {
		for i := len(held) - 1; i >= 0; i-- {
			_ = held[i].Close() // closing the file drops its flock
		}
	}
	for _, k := range keys {
		f, err := s.lockOne(ctx, k)
		if err != nil {
			unlock()
			return nil, err
		}
		held = append(held, f)
	}
	return unlock, nil
}

func (s uplinkStore) lockOne(ctx context.Context, key string) (*os.File, error) {
	path := filepath.Join(s.dir, "locks", key+".lock")
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return f, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			_ = f.Close()
			return nil, fmt.Errorf("locking %s: %w", path, err)
		}
		select {
		case <-ctx.Done():
			_ = f.Close()
			return nil, fmt.Errorf("waiting for the lock of %s (%s): %w; another plugin holds it (see the plugin log)", key, path, ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// join writes the record, then the attachment into each link's users: a crash in between
// leaves a record DEL and GC clean up, never a user no record names.
func (s uplinkStore) join(r *uplinkRecord) error {
	key, err := attachmentKey(r.ContainerID, r.IfName)
	if err != nil {
		return err
	}
	if err := writeAtomically(s.recordPath(key), r); err != nil {
		return err
	}
	for _, l := range r.Links {
		if err := os.MkdirAll(s.usersDir(l.Key), 0o700); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(s.usersDir(l.Key), key), nil, 0o600); err != nil {
			return err
		}
	}
	return nil
}

func writeAtomically(path string, v any) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// leave takes the attachment out of link's users; none is no error.
func (s uplinkStore) leave(link, containerID, ifName string) error {
	key, err := attachmentKey(containerID, ifName)
	if err != nil {
		return err
	}
	if err := os.Remove(filepath.Join(s.usersDir(link), key)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// inUse reports whether link has a user left. It reads one entry, whatever the number of
// users: DEL's cost does not grow with the pods on the link.
func (s uplinkStore) inUse(link string) (bool, error) {
	d, err := os.Open(s.usersDir(link))
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	defer d.Close()
	names, err := d.Readdirnames(1)
	if errors.Is(err, io.EOF) {
		return false, nil
	}
	return len(names) > 0, err
}

// dropUsers removes link's empty users directory (under its lock: no join races it).
func (s uplinkStore) dropUsers(link string) {
	_ = os.Remove(s.usersDir(link))
}

// load is the attachment's record, nil when it has none.
func (s uplinkStore) load(containerID, ifName string) (*uplinkRecord, error) {
	key, err := attachmentKey(containerID, ifName)
	if err != nil {
		return nil, err
	}
	return s.read(s.recordPath(key))
}

func (s uplinkStore) read(path string) (*uplinkRecord, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	r := &uplinkRecord{}
	if err := json.Unmarshal(b, r); err != nil {
		return nil, fmt.Errorf("uplink record %s: %v (remove the file; GC then frees what it held)", path, err)
	}
	if fi, err := os.Stat(path); err == nil {
		r.written = fi.ModTime()
	}
	return r, nil
}

// forget removes the attachment's record, after its users entries.
func (s uplinkStore) forget(containerID, ifName string) error {
	key, err := attachmentKey(containerID, ifName)
	if err != nil {
		return err
	}
	if err := os.Remove(s.recordPath(key)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// all lists every record, for GC; an unreadable one is skipped and reported.
func (s uplinkStore) all() ([]*uplinkRecord, []error) {
	paths, _ := filepath.Glob(filepath.Join(s.dir, "attachments", "*.json"))
	var out []*uplinkRecord
	var errs []error
	for _, p := range paths {
		r, err := s.read(p)
		switch {
		case err != nil:
			errs = append(errs, err)
		case r != nil:
			out = append(out, r)
		}
	}
	return out, errs
}

// keys are the lock keys of the record's links, bottom first.
func (r *uplinkRecord) keys() []string {
	out := make([]string, 0, len(r.Links))
	for _, l := range r.Links {
		out = append(out, l.Key)
	}
	return out
}
