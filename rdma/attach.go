package rdma

import (
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"
)

// Attacher places RDMA devices for pod attachments.
type Attacher struct {
	Sys   System
	State State
}

// Attach runs after the delegate's ADD. Exclusive mode: the device is moved into the pod
// netns and recorded; if recording fails the device is moved back, so a failed ADD
// never strands it in the pod. Shared mode: nothing moves; the device must exist.
func (a Attacher) Attach(containerID, ifName, podNetns string, want Want) (string, error) {
	dev, err := Find(a.Sys, want)
	if err != nil {
		return "", err
	}
	if want.Mode == Shared {
		if !a.Sys.Exists(dev) {
			return "", fmt.Errorf("RDMA device %s is not visible on the node", dev)
		}
		return dev, nil
	}
	if err := a.Sys.Move(dev, "", podNetns); err != nil {
		if errors.Is(err, syscall.EOPNOTSUPP) {
			// soft-RoCE (rxe, siw) cannot change netns; the message says what to do instead
			return "", fmt.Errorf("RDMA device %s cannot move into the pod netns (its driver answers %v): rdma.mode exclusive "+
				"(the node's `rdma system` netns mode is exclusive) needs a device whose driver can move, such as an SR-IOV VF of "+
				"mlx5; for this device set rdma.mode shared and the node's mode with `rdma system set netns shared`", dev, err)
		}
		return "", fmt.Errorf("moving RDMA device %s into the pod netns: %w", dev, err)
	}
	if err := a.State.Save(Record{ContainerID: containerID, IfName: ifName, Device: dev, Network: want.Network, Created: time.Now()}); err != nil {
		if back := a.Sys.Move(dev, podNetns, ""); back != nil {
			return "", fmt.Errorf("recording RDMA device %s: %v; and moving it back failed: %v", dev, err, back)
		}
		return "", fmt.Errorf("recording RDMA device %s: %w (moved back to the node)", dev, err)
	}
	return dev, nil
}

// Check runs on CHECK: in exclusive mode the attachment's recorded device must be in
// the pod netns (and so gone from the node's); in shared mode the device must still be
// visible on the node. Errors name the device and where it is.
func (a Attacher) Check(containerID, ifName, podNetns string, want Want) error {
	if want.Mode == Shared {
		dev, err := Find(a.Sys, want)
		if err != nil {
			return err
		}
		if !a.Sys.Exists(dev) {
			return fmt.Errorf("RDMA device %s (shared) is not visible on the node", dev)
		}
		return nil
	}
	rec, err := a.State.Load(containerID, ifName)
	if err != nil {
		return err
	}
	if rec == nil {
		return fmt.Errorf("no RDMA device is recorded for %s/%s in %s: ADD placed none", containerID, ifName, a.State.Dir)
	}
	if !a.Sys.ExistsIn(rec.Device, podNetns) {
		where := "nowhere the node can see"
		if a.Sys.Exists(rec.Device) {
			where = "back in the node's netns"
		}
		return fmt.Errorf("RDMA device %s is not in the pod netns %s (exclusive mode): it is %s", rec.Device, podNetns, where)
	}
	return nil
}

// Detach runs before the delegate's DEL (RDMA device before netdev, as the kernel binds
// them): the recorded device goes back to the node, then the record is cleared. A pod
// netns already gone gave its devices back to the node by itself, so that only clears
// the record.
func (a Attacher) Detach(containerID, ifName, podNetns string) error {
	rec, err := a.State.Load(containerID, ifName)
	if err != nil || rec == nil {
		return err
	}
	if podNetns != "" {
		if _, statErr := os.Stat(podNetns); statErr == nil {
			if err := a.Sys.Move(rec.Device, podNetns, ""); err != nil && !a.Sys.Exists(rec.Device) {
				return fmt.Errorf("returning RDMA device %s to the node: %w", rec.Device, err)
			}
		} else if !errors.Is(statErr, os.ErrNotExist) {
			return statErr
		}
	}
	return a.State.Delete(containerID, ifName)
}

// GC clears network's records of attachments no runtime knows any more (valid holds
// "containerID/ifName", the runtime's list for that network); their netns are gone, so
// their devices are back on the node. Records created at or after createdBefore are left.
func (a Attacher) GC(network string, valid map[string]bool, createdBefore time.Time) ([]Record, error) {
	all, err := a.State.All()
	if err != nil {
		return nil, err
	}
	var cleared []Record
	for _, r := range all {
		// another network's attachments are in another list; an ADD younger than the
		// list may be in none yet
		if r.Network != network || !r.Created.Before(createdBefore) || valid[r.ContainerID+"/"+r.IfName] {
			continue
		}
		if err := a.State.Delete(r.ContainerID, r.IfName); err != nil {
			return cleared, err
		}
		cleared = append(cleared, r)
	}
	return cleared, nil
}
