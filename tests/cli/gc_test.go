package cli

import (
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/kubectlplugin"
)

func TestGCDryRun(t *testing.T) {
	ns := namespace(t, nil, nil)
	pool(t, "pg-a", poolSpec{IPPoolSpec: v1.IPPoolSpec{Subnet: "10.254.1.0/24"}, allocated: "2-9,20-21"})
	old := time.Hour
	eps := func(name, addr string, a attach) {
		a.ifName, a.ips = "net1", []v1.EndpointIP{ip(addr, "pg-a")}
		if a.age == 0 {
			a.age = old
		}
		endpoint(t, ns, name, nodeA, a.podUID, "", "", a)
	}
	// live pod: kept
	live := pod(t, ns, "live", podOpts{node: nodeA, phase: corev1.PodRunning})
	eps("live", "10.254.1.2/24", attach{containerID: "c-live", podUID: string(live.UID)})
	// pod object gone
	eps("deleted", "10.254.1.3/24", attach{containerID: "c-deleted", podUID: "uid-deleted"})
	// pod of that name with another UID, no StatefulSet
	pod(t, ns, "replaced", podOpts{node: nodeA, phase: corev1.PodRunning})
	eps("replaced", "10.254.1.4/24", attach{containerID: "c-replaced", podUID: "uid-old"})
	// gone pod, but young: later
	eps("young", "10.254.1.5/24", attach{containerID: "c-young", podUID: "uid-young", age: 10 * time.Second})
	// a newer sandbox of the same pod on the same interface
	sb := pod(t, ns, "sandboxed", podOpts{node: nodeA, phase: corev1.PodRunning})
	endpoint(t, ns, "sandboxed", nodeA, string(sb.UID), "", "",
		attach{containerID: "c-old-sandbox", ifName: "net1", podUID: string(sb.UID), age: 2 * old, ips: []v1.EndpointIP{ip("10.254.1.6/24", "pg-a")}},
		attach{containerID: "c-new-sandbox", ifName: "net1", podUID: string(sb.UID), age: old, ips: []v1.EndpointIP{ip("10.254.1.7/24", "pg-a")}})
	// StatefulSet pods: ordinal 0 still wanted (kept, detached), ordinal 3 scaled away
	statefulSet(t, ns, "db", 2)
	endpoint(t, ns, "db-0", nodeA, "uid-db-0", "StatefulSet", "db", attach{containerID: "c-db-0", ifName: "net1", podUID: "uid-db-0",
		age: old, detached: true, ips: []v1.EndpointIP{ip("10.254.1.8/24", "pg-a")}})
	endpoint(t, ns, "db-3", nodeA, "uid-db-3", "StatefulSet", "db", attach{containerID: "c-db-3", ifName: "net1", podUID: "uid-db-3",
		age: old, detached: true, ips: []v1.EndpointIP{ip("10.254.1.9/24", "pg-a")}})
	// held but not marked in the pool
	eps("unmarked", "10.254.1.30/24", attach{containerID: "c-unmarked", podUID: "uid-unmarked", age: 5 * time.Second})
	// 10.254.1.20-21 are marked, held by nobody: orphans

	var r kubectlplugin.GCReport
	pluginJSON(t, &r, "gc", "--dry-run")
	recycled := map[string]kubectlplugin.GCAttachment{}
	for _, a := range r.Recycle {
		recycled[a.ContainerID] = a
	}
	for _, tc := range []struct{ containerID, reason, why string }{
		{"c-deleted", "pod-deleted", "pod " + ns + "/deleted no longer exists"},
		{"c-replaced", "pod-replaced", "is now another incarnation"},
		{"c-old-sandbox", "sandbox-replaced", "newer attachment on net1 (container c-new-sandbox"},
		{"c-db-3", "statefulset-scaled-down-or-deleted", "StatefulSet db no longer wants ordinal 3"},
	} {
		t.Run("recycle "+tc.reason, func(t *testing.T) {
			a, ok := recycled[tc.containerID]
			if !ok || a.Reason != tc.reason || !strings.Contains(a.Why, tc.why) {
				t.Errorf("attachment %s: %+v (found %v); want %s %q", tc.containerID, a, ok, tc.reason, tc.why)
			}
		})
	}
	t.Run("nothing live is recycled", func(t *testing.T) {
		if len(r.Recycle) != 4 {
			t.Errorf("recycle %+v; want exactly the 4 above", r.Recycle)
		}
	})
	t.Run("young attachments wait for the grace", func(t *testing.T) {
		later := map[string]bool{}
		for _, a := range r.Later {
			later[a.ContainerID] = strings.Contains(a.Why, "younger than the 2m0s grace")
		}
		if len(later) != 2 || !later["c-young"] || !later["c-unmarked"] {
			t.Errorf("later %+v; want c-young and c-unmarked", r.Later)
		}
	})
	t.Run("a StatefulSet ordinal still wanted is kept", func(t *testing.T) {
		if len(r.Kept) != 1 || r.Kept[0].ContainerID != "c-db-0" || !strings.Contains(r.Kept[0].Why, "still wants ordinal 0") {
			t.Errorf("kept %+v; want db-0", r.Kept)
		}
	})
	t.Run("orphans", func(t *testing.T) {
		if len(r.Orphans) != 1 || r.Orphans[0].Pool != "pg-a" || r.Orphans[0].Count != 2 ||
			strings.Join(r.Orphans[0].IPs, ",") != "10.254.1.20,10.254.1.21" {
			t.Errorf("orphans %+v; want 10.254.1.20-21 of pg-a", r.Orphans)
		}
	})
	t.Run("held but unmarked", func(t *testing.T) {
		if len(r.Unmarked) != 1 || !strings.HasPrefix(r.Unmarked[0], "10.254.1.30 (pool pg-a") {
			t.Errorf("unmarked %v; want 10.254.1.30", r.Unmarked)
		}
	})
	t.Run("grace 0 judges the young too", func(t *testing.T) {
		var r0 kubectlplugin.GCReport
		pluginJSON(t, &r0, "gc", "--dry-run", "--grace", "0s")
		if len(r0.Recycle) != 6 || len(r0.Later) != 0 {
			t.Errorf("recycle %d later %d; want 6 and 0", len(r0.Recycle), len(r0.Later))
		}
	})
	t.Run("table", func(t *testing.T) {
		out, err := plugin(t, "gc", "--dry-run")
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("gc --dry-run:\n%s", out)
		for _, want := range []string{"DRY RUN: nothing is freed", "Recycling would free now:", "pod-deleted", "Orphan sweep would free", "10.254.1.20,10.254.1.21", "Kept for a StatefulSet successor"} {
			if !strings.Contains(out, want) {
				t.Errorf("table lacks %q", want)
			}
		}
	})
	t.Run("without --dry-run it refuses", func(t *testing.T) {
		_, err := plugin(t, "gc")
		if err == nil || !strings.Contains(err.Error(), "pass --dry-run") {
			t.Errorf("gc without --dry-run: %v; want a refusal naming --dry-run", err)
		}
	})
}
