package kubectlplugin

import (
	"bytes"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// gcCluster has one attachment per verdict: a gone pod's (recycled now), a younger gone
// pod's (once the grace has passed), a replaced pod's, a live pod's (kept, not listed), a
// StatefulSet pod's whose set still wants it (kept, detached); an empty Endpoint, an
// address no Endpoint holds (an orphan) and one held but not marked.
func gcCluster(t *testing.T) client.Client {
	long, young := now.Add(-time.Hour), now.Add(-30*time.Second)
	sts := endpoint("ns", "db-0", "uid-db-0", long, ip("10.3.0.9/24", "p"))
	sts.Status.OwnerKind, sts.Status.OwnerName = "StatefulSet", "db"
	detached := metav1.NewTime(long)
	sts.Status.Interfaces[0].Detached = &detached
	p := pool("p", "10.3.0.0/24", nil)
	return fakeAPI(t,
		p, allocation(p, "5-9,20"),
		runningPod("ns", "live", "uid-live"), runningPod("ns", "repl", "uid-new"), statefulSet("ns", "db", 1),
		endpoint("ns", "gone", "uid-gone", long, ip("10.3.0.5/24", "p")),
		endpoint("ns", "live", "uid-live", long, ip("10.3.0.6/24", "p"), ip("10.3.0.30/24", "p")),
		endpoint("ns", "repl", "uid-old", long, ip("10.3.0.7/24", "p")),
		endpoint("ns", "young", "uid-young", young, ip("10.3.0.8/24", "p")),
		sts,
		endpoint("ns", "empty", "uid-empty", long))
}

func TestGCSaysWhatRecyclingAndTheOrphanSweepWouldFreeAndWhy(t *testing.T) {
	c := gcCluster(t)
	r, err := GC(t.Context(), c, now, 2*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	wantAttachments(t, "recycle", r.Recycle, []string{
		"ns/gone pod-deleted: pod ns/gone no longer exists",
		"ns/repl pod-replaced: pod ns/repl is now another incarnation (UID uid-new, the attachment's is uid-old) and no StatefulSet pod",
	})
	wantAttachments(t, "later", r.Later, []string{"ns/young pod-deleted: pod ns/young no longer exists; younger than the 2m0s grace"})
	wantAttachments(t, "kept", r.Kept, []string{"ns/db-0 : pod ns/db-0 is gone but StatefulSet db still wants ordinal 0: kept for its successor"})
	if strings.Join(r.EmptyEndpoints, ",") != "ns/empty" {
		t.Errorf("empty Endpoints = %q", r.EmptyEndpoints)
	}
	if len(r.Orphans) != 1 || r.Orphans[0].Pool != "p" || r.Orphans[0].Count != 1 || strings.Join(r.Orphans[0].IPs, ",") != "10.3.0.20" {
		t.Errorf("orphans = %+v, want 10.3.0.20 of pool p", r.Orphans)
	}
	if strings.Join(r.Unmarked, ",") != "10.3.0.30 (pool p, pod ns/live)" || len(r.Unjudged) != 0 {
		t.Errorf("unmarked = %q, unjudged = %q", r.Unmarked, r.Unjudged)
	}

	var out bytes.Buffer
	gcTable(&out, r)
	for _, want := range [][]string{
		{"DRY RUN: nothing is freed."},
		{"Recycling would free now:"},
		{"ns/gone", "eth0", "10.3.0.5/24", "node-1", "gone-cid", "pod-deleted", "pod ns/gone no longer exists"},
		{"ns/repl", "pod-replaced"},
		{"Recycling would free once the grace (2m0s) has passed:"},
		{"ns/young", "pod-deleted", "younger than the 2m0s grace"},
		{"Kept for a StatefulSet successor (detached):"},
		{"ns/db-0", "10.3.0.9/24", "-", "kept for its successor"},
		{"Endpoints holding nothing (recycling deletes them):", "ns/empty"},
		{"p", "1", "10.3.0.20"},
		{"Held but not marked in their pool"},
		{"10.3.0.30 (pool p, pod ns/live)"},
	} {
		if !hasRow(out.String(), want...) {
			t.Errorf("the gc table has no line with %q:\n%s", want, out.String())
		}
	}
}

func TestGCOnAHealthyClusterSaysNothingWouldBeFreed(t *testing.T) {
	p := pool("p", "10.3.0.0/24", nil)
	c := fakeAPI(t, p, allocation(p, "6"), runningPod("ns", "live", "uid-live"),
		endpoint("ns", "live", "uid-live", now.Add(-time.Hour), ip("10.3.0.6/24", "p")))
	out, err := runPlugin(t, c, "", newGCCommand, "--dry-run")
	if err != nil || !strings.Contains(out, "Nothing to free: every attachment's pod lives and every allocated address is held.") {
		t.Errorf("gc --dry-run: %v\n%s", err, out)
	}
	if _, err := runPlugin(t, c, "", newGCCommand); err == nil || !strings.Contains(err.Error(), "pass --dry-run") {
		t.Errorf("gc without --dry-run: %v", err)
	}
}

// The orphan sweep never iterates a corrupt state: its "orphans" would be offsets past
// the subnet, addresses of no pool. gc says why it judges nothing of that pool.
func TestGCListsNoOrphansOfAPoolWhoseStateIsCorruptAndSaysSo(t *testing.T) {
	p := pool("c", "10.4.0.0/24", nil)
	c := fakeAPI(t, p, allocation(p, "3,4000"))
	r, err := GC(t.Context(), c, now, 2*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Orphans) != 0 {
		t.Errorf("orphans = %+v, want none of a corrupt pool", r.Orphans)
	}
	if len(r.Unjudged) != 1 || !strings.Contains(r.Unjudged[0], "IPPool c") || !strings.Contains(r.Unjudged[0], "state.allocated") {
		t.Errorf("unjudged = %q, want pool c's state named", r.Unjudged)
	}
}

// wantAttachments compares verdicts rendered as "pod reason: why".
func wantAttachments(t *testing.T, what string, got []GCAttachment, want []string) {
	t.Helper()
	var out []string
	for _, a := range got {
		out = append(out, a.Pod+" "+a.Reason+": "+a.Why)
	}
	if strings.Join(out, "|") != strings.Join(want, "|") {
		t.Errorf("%s:\n got  %q\n want %q", what, out, want)
	}
}
