package rdma

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// fake is a node with RDMA devices; where maps a device to the netns holding it ("" =
// node).
type fake struct {
	mode     Mode
	byPCI    map[string][]string
	byNetdev map[string]string
	where    map[string]string
	failMove int   // fail the nth Move (1-based); 0: never
	moveErr  error // what the failing Move answers (default: an injected failure)
	moves    int
}

func (f *fake) Mode() (Mode, error)               { return f.mode, nil }
func (f *fake) DevicesForPCI(pci string) []string { return f.byPCI[pci] }
func (f *fake) Exists(dev string) bool            { return f.where[dev] == "" && f.known(dev) }
func (f *fake) ExistsIn(dev, path string) bool    { return f.known(dev) && f.where[dev] == path }
func (f *fake) known(dev string) bool             { _, ok := f.where[dev]; return ok }
func (f *fake) DeviceForNetdev(n string) (string, error) {
	if d, ok := f.byNetdev[n]; ok {
		return d, nil
	}
	return "", errors.New("not found")
}
func (f *fake) Move(dev, from, to string) error {
	f.moves++
	if f.failMove == f.moves {
		if f.moveErr != nil {
			return f.moveErr
		}
		return errors.New("injected failure")
	}
	if f.where[dev] != from {
		return errors.New("no such device in " + from)
	}
	f.where[dev] = to
	return nil
}

func newFake() *fake {
	return &fake{mode: Exclusive, byPCI: map[string][]string{"0000:3b:02.1": {"mlx5_3"}, "0000:3b:02.2": {"mlx5_4", "mlx5_5"}},
		byNetdev: map[string]string{"ens1f0": "mlx5_0"}, where: map[string]string{"mlx5_0": "", "mlx5_3": "", "mlx5_4": "", "mlx5_5": ""}}
}

func podNetns(t *testing.T) string {
	p := filepath.Join(t.TempDir(), "netns")
	if err := os.WriteFile(p, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestExclusiveMovesIntoPodAndBack(t *testing.T) {
	f := newFake()
	a := Attacher{Sys: f, State: State{Dir: t.TempDir()}}
	pod := podNetns(t)
	dev, err := a.Attach("c1", "net1", pod, Want{Mode: Exclusive, DeviceID: "0000:3b:02.1"})
	if err != nil || dev != "mlx5_3" || f.where["mlx5_3"] != pod {
		t.Fatalf("Attach = %s, %v; device in %q", dev, err, f.where["mlx5_3"])
	}
	if err := a.Detach("c1", "net1", pod); err != nil || f.where["mlx5_3"] != "" {
		t.Fatalf("Detach = %v; device in %q", err, f.where["mlx5_3"])
	}
	if rec, _ := a.State.Load("c1", "net1"); rec != nil {
		t.Fatalf("state left after DEL: %+v", rec)
	}
}

// A failure half-way (the device moved, recording it failed) moves it back.
func TestFailureHalfWayLeavesDeviceOnNode(t *testing.T) {
	f := newFake()
	dir := filepath.Join(t.TempDir(), "state")
	if err := os.WriteFile(dir, nil, 0o600); err != nil { // a file where the dir should be
		t.Fatal(err)
	}
	a := Attacher{Sys: f, State: State{Dir: dir}}
	_, err := a.Attach("c1", "net1", podNetns(t), Want{Mode: Exclusive, DeviceID: "0000:3b:02.1"})
	if err == nil || !strings.Contains(err.Error(), "moved back") || f.where["mlx5_3"] != "" {
		t.Fatalf("Attach = %v; device in %q, want it back on the node", err, f.where["mlx5_3"])
	}
	f.failMove = f.moves + 1
	_, err = Attacher{Sys: f, State: State{Dir: t.TempDir()}}.Attach("c2", "net1", podNetns(t), Want{Mode: Exclusive, DeviceID: "0000:3b:02.1"})
	if err == nil || f.where["mlx5_3"] != "" {
		t.Fatalf("a failed move must leave the device on the node: %v, in %q", err, f.where["mlx5_3"])
	}
}

// DEL with the netns already gone (its devices went back to the node with it) clears the
// state and succeeds; GC clears what no runtime knows.
func TestDelWithoutNetnsAndGC(t *testing.T) {
	f := newFake()
	a := Attacher{Sys: f, State: State{Dir: t.TempDir()}}
	pod := podNetns(t)
	if _, err := a.Attach("c1", "net1", pod, Want{Mode: Exclusive, DeviceID: "0000:3b:02.1"}); err != nil {
		t.Fatal(err)
	}
	os.Remove(pod)
	f.where["mlx5_3"] = "" // the kernel returns a destroyed netns' RDMA devices
	if err := a.Detach("c1", "net1", pod); err != nil {
		t.Fatalf("DEL without netns: %v", err)
	}
	if rec, _ := a.State.Load("c1", "net1"); rec != nil {
		t.Fatal("state left")
	}
	old := time.Now().Add(-time.Hour)
	for _, r := range []Record{
		{ContainerID: "keep", Network: "rdma-a", Created: old},
		{ContainerID: "gone", Network: "rdma-a", Created: old},
		{ContainerID: "other-network", Network: "rdma-b", Created: old},    // in rdma-b's list, not this one
		{ContainerID: "in-flight", Network: "rdma-a", Created: time.Now()}, // ADD younger than the list
		{ContainerID: "older-record", Created: old},                        // no network: judged by none
	} {
		r.IfName, r.Device = "net1", "mlx5_0"
		if err := a.State.Save(r); err != nil {
			t.Fatal(err)
		}
	}
	cleared, err := a.GC("rdma-a", map[string]bool{"keep/net1": true}, time.Now().Add(-time.Minute))
	if err != nil || len(cleared) != 1 || cleared[0].ContainerID != "gone" {
		t.Fatalf("GC cleared %+v, %v; want only rdma-a's old record the runtime no longer lists", cleared, err)
	}
}

func TestClearErrors(t *testing.T) {
	f := newFake()
	a := Attacher{Sys: f, State: State{Dir: t.TempDir()}}
	cases := []struct {
		name string
		want Want
		msg  string
	}{
		{"mode mismatch", Want{Mode: Shared, Netdev: "ens1f0"}, "rdma.mode is shared but the kernel's RDMA netns mode is exclusive"},
		{"missing device", Want{Mode: Exclusive, DeviceID: "0000:3b:09.0"}, "no RDMA device for PCI function 0000:3b:09.0"},
		{"two devices for one VF", Want{Mode: Exclusive, DeviceID: "0000:3b:02.2"}, "has 2 RDMA devices"},
		{"nothing to find it by", Want{Mode: Exclusive}, "no deviceID"},
	}
	for _, c := range cases {
		if _, err := a.Attach("c", "net1", podNetns(t), c.want); err == nil || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%s: got %v, want %q", c.name, err, c.msg)
		}
	}
	f.mode = Shared
	if dev, err := a.Attach("c", "net1", podNetns(t), Want{Mode: Shared, Netdev: "ens1f0"}); err != nil || dev != "mlx5_0" || f.moves != 0 {
		t.Fatalf("shared mode: %s %v, %d moves (want none)", dev, err, f.moves)
	}
}

// The real System opens a netns handle and a netlink handle per move: 100 moves (that
// fail here, with no RDMA device, after opening everything) leave no descriptor behind.
func TestKernelMoveLeaksNoDescriptors(t *testing.T) {
	count := func() int {
		entries, err := os.ReadDir("/proc/self/fd")
		if err != nil {
			t.Skip("skipped: no /proc/self/fd: " + err.Error())
		}
		return len(entries)
	}
	before := count()
	for i := 0; i < 100; i++ {
		_ = Kernel{}.Move("no-such-rdma-dev", "", "")
	}
	if after := count(); after > before {
		t.Fatalf("open descriptors grew from %d to %d over 100 moves", before, after)
	}
}

// CHECK: exclusive mode wants the recorded device in the pod netns and says where it is
// otherwise; shared mode wants it visible on the node.
func TestCheckPlacement(t *testing.T) {
	f := newFake()
	a := Attacher{Sys: f, State: State{Dir: t.TempDir()}}
	pod := podNetns(t)
	want := Want{Mode: Exclusive, DeviceID: "0000:3b:02.1"}
	if err := a.Check("c1", "net1", pod, want); err == nil || !strings.Contains(err.Error(), "no RDMA device is recorded for c1/net1") {
		t.Fatalf("CHECK before ADD: %v", err)
	}
	if _, err := a.Attach("c1", "net1", pod, want); err != nil {
		t.Fatal(err)
	}
	if err := a.Check("c1", "net1", pod, want); err != nil {
		t.Fatalf("CHECK right after ADD: %v", err)
	}
	f.where["mlx5_3"] = "" // someone moved it back to the node
	if err := a.Check("c1", "net1", pod, want); err == nil || !strings.Contains(err.Error(), "mlx5_3 is not in the pod netns "+pod+" (exclusive mode): it is back in the node's netns") {
		t.Fatalf("CHECK with the device on the node: %v", err)
	}
	f.where["mlx5_3"] = podNetns(t) // in another pod
	if err := a.Check("c1", "net1", pod, want); err == nil || !strings.Contains(err.Error(), "nowhere the node can see") {
		t.Fatalf("CHECK with the device elsewhere: %v", err)
	}

	f.mode = Shared
	shared := Want{Mode: Shared, Netdev: "ens1f0"}
	if err := a.Check("c2", "net1", pod, shared); err != nil {
		t.Fatalf("shared CHECK: %v", err)
	}
	f.where["mlx5_0"] = pod
	if err := a.Check("c2", "net1", pod, shared); err == nil || !strings.Contains(err.Error(), "mlx5_0 (shared) is not visible on the node") {
		t.Fatalf("shared CHECK with the device gone: %v", err)
	}
}

// A device whose driver cannot change netns (soft-RoCE answers EOPNOTSUPP, as the VM test
// shows on a real kernel) fails ADD with the device, the mode and the fix, and stays put.
func TestADeviceThatCannotMoveFailsNamingTheModeAndTheFix(t *testing.T) {
	f := newFake()
	f.failMove, f.moveErr = 1, syscall.EOPNOTSUPP
	a := Attacher{Sys: f, State: State{Dir: t.TempDir()}}
	_, err := a.Attach("c1", "net1", podNetns(t), Want{Mode: Exclusive, DeviceID: "0000:3b:02.1"})
	for _, want := range []string{"mlx5_3", "cannot move", "rdma.mode exclusive", "set rdma.mode shared"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("Attach of a device that cannot move: want an error naming %q, got %v", want, err)
		}
	}
	if f.where["mlx5_3"] != "" {
		t.Fatalf("the device moved to %q", f.where["mlx5_3"])
	}
}
