package rdma

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// DefaultStateDir keeps which RDMA device each attachment holds, so DEL knows what to
// give back even when the runtime passes no result.
const DefaultStateDir = "/var/lib/cni/underpool/rdma"

// State is a directory of one small file per attachment holding an RDMA device.
type State struct{ Dir string }

// Record is what one attachment holds.
type Record struct {
	ContainerID string `json:"containerID"`
	IfName      string `json:"ifName"`
	Device      string `json:"device"`
	// Network is the CNI network the attachment belongs to: CNI GC lists valid attachments
	// per network, so only that network's GC may judge the record ("": an older record,
	// judged by none, cleared by its DEL).
	Network string `json:"network,omitempty"`
	// Created is when ADD recorded it: GC leaves younger records alone, as an ADD in
	// flight when the runtime took its list of valid attachments is in no list.
	Created time.Time `json:"created,omitempty"`
}

func (s State) path(containerID, ifName string) string {
	return filepath.Join(s.Dir, containerID+"-"+ifName+".json")
}

// Save writes the record atomically (write then rename): a crash never leaves half a file.
func (s State) Save(r Record) error {
	if err := os.MkdirAll(s.Dir, 0o700); err != nil {
		return err
	}
	b, _ := json.Marshal(r)
	tmp := s.path(r.ContainerID, r.IfName) + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, s.path(r.ContainerID, r.IfName))
}

// Load returns the record, or nil when there is none.
func (s State) Load(containerID, ifName string) (*Record, error) {
	b, err := os.ReadFile(s.path(containerID, ifName))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	r := &Record{}
	if err := json.Unmarshal(b, r); err != nil {
		return nil, fmt.Errorf("RDMA state %s: %v", s.path(containerID, ifName), err)
	}
	return r, nil
}

// Delete removes the record; none is no error.
func (s State) Delete(containerID, ifName string) error {
	err := os.Remove(s.path(containerID, ifName))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return err
}

// All lists every record.
func (s State) All() ([]Record, error) {
	entries, err := os.ReadDir(s.Dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	var out []Record
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(s.Dir, e.Name()))
		if err != nil {
			return nil, err
		}
		var r Record
		if json.Unmarshal(b, &r) == nil {
			out = append(out, r)
		}
	}
	return out, err
}
