package guest

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/tests/e2e"
	"github.com/underpool/underpool/tests/harness"
)

// RDMA on a real kernel with a soft-RoCE device (rdma_rxe) on the macvlan master. These run
// in the VM's own netns, not one standing for the node: sysfs, where rdmamap and the GID table
// live, is the root netns' view, and the VM is thrown away afterwards anyway.

// Shared mode: the plugin finds the rxe device behind the master with rdmamap on a real sysfs,
// the pod sees it, its GID table holds the pod's address on the pod's link, CHECK passes while
// the device is there and names it once it is gone, and DEL leaves nothing.
func TestRdmaSharedModeFindsTheSoftRoCEDeviceBehindTheMaster(t *testing.T) {
	requireRdmaMode(t, "shared")
	v4net, _, x := e2e.NextSubnet()
	master := newRootMaster(t)
	dev := newRxe(t, master)
	pool := newPool(t, v1.IPPoolSpec{Subnet: v4net, Gateway: fmt.Sprintf("10.250.%d.1", x)})
	conf := netConf{Delegate: map[string]any{"type": "macvlan", "master": master, "mode": "bridge"},
		IPv4Pools: []string{pool.Name}, Extra: map[string]any{
			"rdma": map[string]any{"mode": "shared"}, "hostConnectivity": map[string]any{"enabled": false}}}.conflist(t)
	cni := &harness.CNI{BinDirs: []string{BinDir}, CacheDir: t.TempDir()}
	ns := newNamespace(t)
	pod := newNetNS(t, "pod")
	rt := runtimeFor(pod, ns, "rdma", "net1")
	res, err := cni.Add(ctx(t), conf, rt)
	if err != nil {
		t.Fatalf("ADD: %v", err)
	}
	ip := e2e.FirstIP(t, res, true)
	if !rdmaVisibleIn(pod.Path(), dev) {
		t.Errorf("the pod does not see %s (shared mode: every netns should)", dev)
	}
	if ndev := gidNetdev(t, dev, e2e.ParseIP(t, ip)); ndev != "net1" {
		t.Errorf("%s's GID table holds %s on %q, want the pod's net1", dev, ip, ndev)
	}
	requireInvariants(t, []harness.Runtime{rt}, pool.Name)
	if err := cni.Check(ctx(t), conf, rt); err != nil {
		t.Errorf("CHECK with the device in place: %v", err)
	}
	rdmaTool(t, "link", "delete", dev)
	if err := cni.Check(ctx(t), conf, rt); err == nil || !strings.Contains(err.Error(), "RDMA") {
		t.Errorf("CHECK with %s gone must fail naming RDMA, got %v", dev, err)
	}
	if err := cni.Del(ctx(t), conf, rt); err != nil {
		t.Fatalf("DEL: %v", err)
	}
	if links := linksIn(t, pod); strings.Join(links, ",") != "lo" {
		t.Errorf("DEL left links in the pod: %v", links)
	}
	e2e.RequireNothingLeft(t, ns, pool.Name)
}

// A network whose rdma.mode is not the kernel's fails ADD naming both and the command that
// changes the kernel's, and leaves nothing held.
func TestRdmaModeOtherThanTheKernelsFailsAddNamingTheFix(t *testing.T) {
	requireRdmaMode(t, "shared")
	v4net, _, x := e2e.NextSubnet()
	master := newRootMaster(t)
	newRxe(t, master)
	pool := newPool(t, v1.IPPoolSpec{Subnet: v4net, Gateway: fmt.Sprintf("10.250.%d.1", x)})
	conf := netConf{Delegate: map[string]any{"type": "macvlan", "master": master, "mode": "bridge"},
		IPv4Pools: []string{pool.Name}, Extra: map[string]any{
			"rdma": map[string]any{"mode": "exclusive"}, "hostConnectivity": map[string]any{"enabled": false}}}.conflist(t)
	cni := &harness.CNI{BinDirs: []string{BinDir}, CacheDir: t.TempDir()}
	ns := newNamespace(t)
	pod := newNetNS(t, "pod")
	_, err := cni.Add(ctx(t), conf, runtimeFor(pod, ns, "mismatch", "net1"))
	if err == nil || !strings.Contains(err.Error(), "rdma system set netns exclusive") {
		t.Fatalf("ADD with rdma.mode exclusive on a shared kernel must fail naming the fix, got %v", err)
	}
	if links := linksIn(t, pod); strings.Join(links, ",") != "lo" {
		t.Errorf("the failed ADD left links in the pod: %v", links)
	}
	e2e.RequireNothingLeft(t, ns, pool.Name)
}

// Exclusive mode with a device that cannot change netns (rxe has no netns support: the
// kernel answers "Operation not supported"): ADD fails naming the device, and undoes itself.
// The move itself is proved against the fake in the rdma package; a real mlx5 VF moves.
func TestRdmaExclusiveModeWithADeviceThatCannotMoveFailsAddAndLeavesNothing(t *testing.T) {
	requireRdmaMode(t, "shared")
	v4net, _, x := e2e.NextSubnet()
	master := newRootMaster(t)
	dev := newRxe(t, master)
	rdmaTool(t, "system", "set", "netns", "exclusive")
	t.Cleanup(func() { _, _ = command("rdma", "system", "set", "netns", "shared") })
	pool := newPool(t, v1.IPPoolSpec{Subnet: v4net, Gateway: fmt.Sprintf("10.250.%d.1", x)})
	conf := netConf{Delegate: map[string]any{"type": "macvlan", "master": master, "mode": "bridge"},
		IPv4Pools: []string{pool.Name}, Extra: map[string]any{
			"rdma": map[string]any{"mode": "exclusive"}, "hostConnectivity": map[string]any{"enabled": false}}}.conflist(t)
	cni := &harness.CNI{BinDirs: []string{BinDir}, CacheDir: t.TempDir()}
	ns := newNamespace(t)
	pod := newNetNS(t, "pod")
	_, err := cni.Add(ctx(t), conf, runtimeFor(pod, ns, "excl", "net1"))
	for _, want := range []string{dev, "cannot move", "rdma.mode exclusive", "set rdma.mode shared"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("ADD moving %s (which cannot change netns) must fail naming the device, the mode and the fix (%q), got %v", dev, want, err)
		}
	}
	t.Logf("ADD's error: %v", err)
	if links := linksIn(t, pod); strings.Join(links, ",") != "lo" {
		t.Errorf("the failed ADD left links in the pod: %v", links)
	}
	if !rdmaVisibleIn("", dev) {
		t.Errorf("%s is no longer on the node after the failed ADD", dev)
	}
	e2e.RequireNothingLeft(t, ns, pool.Name)
}

// newRootMaster makes a veth pair in the VM's own netns, both ends up; the near end is the
// master. The pair goes when the test ends.
func newRootMaster(t *testing.T) string {
	t.Helper()
	a, b := harness.UniqueName("rm"), harness.UniqueName("rp")
	v, err := harness.NewVethPair(a, b)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = v.Close() })
	return a
}

// newRxe makes a soft-RoCE device on netdev, removed when the test ends.
func newRxe(t *testing.T, netdev string) string {
	t.Helper()
	dev := harness.UniqueName("rxe")
	rdmaTool(t, "link", "add", dev, "type", "rxe", "netdev", netdev)
	t.Cleanup(func() { _, _ = command("rdma", "link", "delete", dev) })
	return dev
}

// requireRdmaMode checks the kernel's RDMA netns mode, which a test left changed would spoil.
func requireRdmaMode(t *testing.T, mode string) {
	t.Helper()
	out := rdmaTool(t, "system", "show")
	if !strings.Contains(out, "netns "+mode) {
		t.Fatalf("the kernel's RDMA netns mode is not %s: %s", mode, out)
	}
}

func rdmaTool(t *testing.T, args ...string) string {
	t.Helper()
	out, err := command("rdma", args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// command runs a program and returns its output; the error carries the output too.
func command(name string, args ...string) (string, error) {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// rdmaVisibleIn reports whether the RDMA device is visible from the netns at path ("" = ours).
func rdmaVisibleIn(path, dev string) bool {
	if path == "" {
		_, err := netlink.RdmaLinkByName(dev)
		return err == nil
	}
	h, err := netns.GetFromPath(path)
	if err != nil {
		return false
	}
	defer h.Close()
	nh, err := netlink.NewHandleAt(h)
	if err != nil {
		return false
	}
	defer nh.Close()
	_, err = nh.RdmaLinkByName(dev)
	return err == nil
}

// gidNetdev finds ip (as an IPv4-mapped GID) in port 1's GID table and returns the netdev the
// entry is bound to; "" when the table lacks it.
func gidNetdev(t *testing.T, dev string, ip net.IP) string {
	t.Helper()
	want := gidString(ip)
	port := filepath.Join("/sys/class/infiniband", dev, "ports", "1")
	entries, err := os.ReadDir(filepath.Join(port, "gids"))
	if err != nil {
		t.Fatalf("reading %s's GID table: %v", dev, err)
	}
	var seen []string
	for _, e := range entries {
		gid, err := os.ReadFile(filepath.Join(port, "gids", e.Name()))
		if err != nil || strings.TrimSpace(string(gid)) != want {
			if err == nil && !strings.HasPrefix(string(gid), "0000:0000:0000:0000:0000:0000:0000:0000") {
				seen = append(seen, strings.TrimSpace(string(gid)))
			}
			continue
		}
		ndev, err := os.ReadFile(filepath.Join(port, "gid_attrs", "ndevs", e.Name()))
		if err != nil {
			t.Fatalf("GID %s of %s has no netdev: %v", want, dev, err)
		}
		return strings.TrimSpace(string(ndev))
	}
	t.Logf("%s's GID table lacks %s; it holds %v", dev, want, seen)
	return ""
}

// gidString is the sysfs form of an address's GID: IPv4 mapped into IPv6, eight groups.
func gidString(ip net.IP) string {
	b := ip.To16()
	groups := make([]string, 8)
	for i := range groups {
		groups[i] = fmt.Sprintf("%02x%02x", b[2*i], b[2*i+1])
	}
	return strings.Join(groups, ":")
}
