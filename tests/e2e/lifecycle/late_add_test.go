package lifecycle

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/tests/e2e"
)

// heldADD stands between multus and the underpool plugin on the nodes' CNI path: an ADD
// for one pod name, run with the ipamd socket named in the socket file, waits while the
// hold file exists, then runs the real plugin and records its exit code. That is the
// window a slow ADD leaves open after multus checked the pod's UID and before ipamd reads
// the pod.
type heldADD struct {
	dir, binDir string
}

func newHeldADD(t *testing.T, pod string) *heldADD {
	t.Helper()
	e2e.MultusConflist(t) // makes the shared bin dir
	h := &heldADD{dir: t.TempDir()}
	h.binDir = filepath.Join(h.dir, "bin")
	if err := os.MkdirAll(h.binDir, 0o755); err != nil {
		t.Fatal(err)
	}
	shared := filepath.Join(e2e.Suite.Dir, "multus-bin")
	entries, err := os.ReadDir(shared)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Name() != "underpool" {
			if err := os.Symlink(filepath.Join(shared, e.Name()), filepath.Join(h.binDir, e.Name())); err != nil {
				t.Fatal(err)
			}
		}
	}
	script := fmt.Sprintf(`#!/bin/sh
real=%q; dir=%q
if [ "$CNI_COMMAND" = ADD ] && [ -e "$dir/hold" ] && [ "$UNDERPOOL_IPAMD_SOCKET" = "$(cat "$dir/socket")" ] && echo "$CNI_ARGS" | grep -q "K8S_POD_NAME=%s;"; then
  touch "$dir/arrived"
  while [ -e "$dir/hold" ]; do sleep 0.1; done
  "$real" "$@"; rc=$?
  echo $rc > "$dir/rc"
  exit $rc
fi
exec "$real" "$@"
`, filepath.Join(e2e.Suite.Bin, "underpool"), h.dir, pod)
	if err := os.WriteFile(filepath.Join(h.binDir, "underpool"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return h
}

// holdOn starts holding the pod's ADDs that go to the ipamd of socket.
func (h *heldADD) holdOn(t *testing.T, socket string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(h.dir, "socket"), []byte(socket), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(h.dir, "hold"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
}

func (h *heldADD) exists(name string) bool {
	_, err := os.Stat(filepath.Join(h.dir, name))
	return err == nil
}

func (h *heldADD) release(t *testing.T) {
	t.Helper()
	if err := os.Remove(filepath.Join(h.dir, "hold")); err != nil {
		t.Fatal(err)
	}
}

// A pod is force-deleted while its ADD is still on its way on node B, and made again under
// the same name on node A, where it runs. The late ADD on B reaches ipamd after the pod
// object became the new incarnation: ipamd refuses it (the UID is not the pod's, and the
// pod is bound to A), so it records nothing against the live pod, whose Endpoint keeps
// node A and its one attachment, and whose address no recycling takes.
func TestLateADDOfAForceDeletedPodIsRefused(t *testing.T) {
	_, _, third := e2e.NextSubnet()
	pool := e2e.NewPool(t, v1.IPPoolSpec{Subnet: fmt.Sprintf("10.250.%d.0/24", third)})
	held := newHeldADD(t, "late")
	probe := newLifecycle(t, lifecycleOptions{nodes: 2, ipv4Pools: []string{pool.Name}, conflist: e2e.MultusConflistIn(t, held.binDir)})
	a, b := probe.nodes[0], probe.nodes[1]
	held.holdOn(t, b.ipamd.Options.Socket)

	pod := func(node string) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: probe.ns, Name: "late", Annotations: probe.onNetwork(nil),
			Labels: map[string]string{"app": "late"}},
			Spec: corev1.PodSpec{NodeName: node, TerminationGracePeriodSeconds: ptr.To[int64](lifecycleGrace),
				Containers: []corev1.Container{{Name: "c", Image: "pause"}}}}
	}
	old := pod(b.name)
	probe.create(old)
	probe.eventually("the ADD on node B to be held", time.Minute, func() (bool, string) { return held.exists("arrived"), "" })

	// force-deleted, made again on A, running there
	if err := e2e.Suite.Client.Delete(e2e.Ctx(t), old, client.GracePeriodSeconds(0)); err != nil {
		t.Fatal(err)
	}
	probe.eventually("the old incarnation to be gone", time.Minute, func() (bool, string) {
		var p corev1.Pod
		err := e2e.Suite.Client.Get(e2e.Ctx(t), client.ObjectKey{Namespace: probe.ns, Name: "late"}, &p)
		return err != nil, ""
	})
	probe.create(pod(a.name))
	live := probe.waitReady("late", 1)["late"]
	addr := probe.addresses()["late"]

	held.release(t)
	probe.eventually("the late ADD on node B to finish", time.Minute, func() (bool, string) { return held.exists("rc"), "" })
	if rc, _ := os.ReadFile(filepath.Join(held.dir, "rc")); strings.TrimSpace(string(rc)) == "0" {
		t.Fatal("the late ADD of the force-deleted incarnation succeeded; ipamd must refuse it")
	}
	// through several recycling rounds of both nodes (1 s each), the live pod keeps its
	// one attachment, on node A, with its address
	e2e.HoldFor(5*time.Second, func() {
		var ep v1.Endpoint
		if err := e2e.Suite.Client.Get(e2e.Ctx(t), client.ObjectKey{Namespace: probe.ns, Name: "late"}, &ep); err != nil {
			t.Fatalf("the live pod's Endpoint: %v", err)
		}
		if ep.Status.Node != a.name || ep.Status.PodUID != string(live.UID) || len(ep.Status.Interfaces) != 1 {
			t.Fatalf("the live pod's Endpoint changed: node %s uid %s, attachments %+v (want node %s, uid %s, one)",
				ep.Status.Node, ep.Status.PodUID, ep.Status.Interfaces, a.name, live.UID)
		}
		if got := probe.sandboxAddresses(a, "late"); len(got) != 1 || got[0] != addr {
			t.Fatalf("the live sandbox has %v, its Endpoint %s", got, addr)
		}
	})
	probe.requireInvariants(pool.Name)
	if err := e2e.Suite.Client.Delete(e2e.Ctx(t), &live); err != nil {
		t.Fatal(err)
	}
	probe.requireNothingLeft(pool.Name)
}
