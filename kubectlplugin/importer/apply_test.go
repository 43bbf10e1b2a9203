package importer_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/underpool/underpool/api/v1"
)

func TestAWriteFailingHalfwayNamesWhatWasWrittenAndARerunFinishes(t *testing.T) {
	w := spiderCluster(t)
	w.fail = func(verb string, obj client.Object) error {
		if _, ok := obj.(*v1.Endpoint); ok {
			return errors.New("endpoints.underpool.io is forbidden")
		}
		return nil
	}
	_, err := w.run("spiderpool", false, "")
	wantErr(t, err, "creating Endpoint ns/a", "is forbidden",
		"already written: Subnet net, ReservedIP keep, IPPool v4 (allocated 10)", "run the import again to finish")

	w.fail = nil
	rep := w.mustRun("spiderpool", "")
	wantSame(t, "changes of the re-run", changes(rep), []string{"unchanged Subnet net", "unchanged ReservedIP keep", "unchanged IPPool v4", "create Endpoint ns/a"})
}

// An imported pool hands out nothing until its state is written: ipamd would start it
// from an empty state and could hand out an imported live address. So the pool is
// created carrying the importing annotation, its PoolAllocation written, and only then
// the annotation removed.
func TestAnImportedPoolRefusesAllocationsUntilItsStateIsWritten(t *testing.T) {
	w := spiderCluster(t)
	w.fail = func(verb string, obj client.Object) error {
		switch {
		case verb == "create" && kindOf(obj) == "IPPool":
			if obj.GetAnnotations()[v1.ImportingAnnotation] != "true" {
				t.Errorf("IPPool %s is created without %s: ipamd may allocate from it at once", obj.GetName(), v1.ImportingAnnotation)
			}
		case kindOf(obj) == "PoolAllocation":
			if p := w.pool(obj.GetName()); p.Annotations[v1.ImportingAnnotation] != "true" {
				t.Errorf("IPPool %s no longer refuses allocations when its state is written", p.Name)
			}
		}
		return nil
	}

	w.mustRun("spiderpool", "")

	wantSame(t, "writes", w.written(), []string{"create Subnet net", "create ReservedIP keep",
		"create IPPool v4", "create PoolAllocation v4", "patch IPPool v4", "create Endpoint ns/a"})
	if p := w.pool("v4"); p.Annotations[v1.ImportingAnnotation] != "" {
		t.Errorf("IPPool v4 annotations = %v, want %s removed once its state is written", p.Annotations, v1.ImportingAnnotation)
	}
	if s := w.state("v4"); s.Allocated != "10" {
		t.Errorf("PoolAllocation v4 state = %+v, want allocated 10", s)
	}
}

// A failure between the pool and the end of its state leaves the pool refusing
// allocations, and no Endpoint; the re-run writes what is missing and opens the pool.
func TestAFailedStateWriteLeavesThePoolRefusingAllocationsAndARerunFinishesIt(t *testing.T) {
	for _, c := range []struct {
		name, verb, kind string
		failure, left    string
	}{
		{"state", "create", "PoolAllocation", "writing PoolAllocation v4", "IPPool v4 (without its allocation state"},
		{"annotation", "patch", "IPPool", "removing annotation underpool.io/importing from IPPool v4", "still marked importing"},
	} {
		t.Run(c.name, func(t *testing.T) {
			w := spiderCluster(t)
			w.fail = func(verb string, obj client.Object) error {
				if verb == c.verb && kindOf(obj) == c.kind {
					return errors.New("the apiserver is gone")
				}
				return nil
			}

			_, err := w.run("spiderpool", false, "")

			wantErr(t, err, c.failure, "the apiserver is gone", c.left, "run the import again to finish")
			if p := w.pool("v4"); p.Annotations[v1.ImportingAnnotation] != "true" {
				t.Errorf("IPPool v4 annotations = %v after a failed import: ipamd may hand out its imported addresses", p.Annotations)
			}
			if objs := w.underpoolObjects(); slices.Contains(objs, "Endpoint ns/a") {
				t.Errorf("an Endpoint was written before its pool's state: %q", objs)
			}

			w.fail = nil
			rep := w.mustRun("spiderpool", "")

			wantSame(t, "changes of the re-run", changes(rep), []string{"unchanged Subnet net", "unchanged ReservedIP keep", "mark IPPool v4", "create Endpoint ns/a"})
			if p := w.pool("v4"); p.Annotations[v1.ImportingAnnotation] != "" {
				t.Errorf("IPPool v4 annotations = %v after the re-run, want %s removed", p.Annotations, v1.ImportingAnnotation)
			}
			if s := w.state("v4"); s.Allocated != "10" || s.AllocatedIPCount != 1 {
				t.Errorf("PoolAllocation v4 state = %+v, want allocated 10", s)
			}
		})
	}
}

// otherWriterFirst makes another writer (ipamd) write each PoolAllocation once, just
// before the import's own write of it: creating it when there is none. The import's write
// then conflicts or finds it there.
func otherWriterFirst(t *testing.T, w *world, change func(*v1.PoolAllocation)) {
	done := map[string]bool{}
	w.beforeState = func(c client.Client, obj client.Object) {
		if done[obj.GetName()] {
			return
		}
		done[obj.GetName()] = true
		ctx := context.Background()
		cur := &v1.PoolAllocation{}
		err := c.Get(ctx, client.ObjectKeyFromObject(obj), cur)
		if apierrors.IsNotFound(err) {
			pool := &v1.IPPool{}
			if err := c.Get(ctx, client.ObjectKeyFromObject(obj), pool); err != nil {
				t.Fatal(err)
			}
			cur = v1.AllocationOf(pool)
			change(cur)
			err = c.Create(ctx, cur)
		} else if err == nil {
			change(cur)
			err = c.Update(ctx, cur)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

// Another writer may create a new pool's PoolAllocation first: the import's create finds
// it there, and the import reads it again and updates it, keeping what it holds.
func TestAPoolAllocationAnotherWriterCreatedFirstIsReadAgain(t *testing.T) {
	w := spiderCluster(t)
	otherWriterFirst(t, w, func(a *v1.PoolAllocation) { a.State.Cursor = "12" })

	w.mustRun("spiderpool", "")

	if s := w.state("v4"); s.Allocated != "10" || s.AllocatedIPCount != 1 || s.Cursor != "12" {
		t.Errorf("PoolAllocation v4 state = %+v, want allocated 10 beside the other writer's cursor 12", s)
	}
}

// A PoolAllocation of an earlier pool of the same name (another UID, not collected yet)
// is never served nor extended: the import replaces it with the new pool's.
func TestAnEarlierPoolsLeftoverPoolAllocationIsReplaced(t *testing.T) {
	earlier := ipPool("v4", v1.IPPoolSpec{Subnet: "10.240.1.0/24"})
	earlier.UID = "uid-of-an-earlier-v4"
	w := spiderCluster(t, allocation(earlier, "20-30"))

	w.mustRun("spiderpool", "")

	a := &v1.PoolAllocation{}
	if err := w.c.Get(context.Background(), client.ObjectKey{Name: "v4"}, a); err != nil {
		t.Fatal(err)
	}
	if p := w.pool("v4"); a.PoolUID != p.UID || a.State.Allocated != "10" {
		t.Errorf("PoolAllocation v4 = %+v, want the new pool's (UID %s, owned by it) with allocated 10", a, p.UID)
	}
	if !slices.Contains(w.written(), "delete PoolAllocation v4") {
		t.Errorf("writes = %q, want the leftover deleted", w.written())
	}
}

// An address handed out between the plan and the write (a pod that ipamd served from the
// pool meanwhile) would then have two holders: the import refuses, naming it, whether it
// creates the pool or marks an existing one.
func TestAnAddressHandedOutSinceThePlanRefusesTheImport(t *testing.T) {
	same := ipPool("v4", v1.IPPoolSpec{Subnet: "10.240.1.0/24", IPs: []string{"10.240.1.10-10.240.1.50"}, Gateway: "10.240.1.1"})
	for _, c := range []struct {
		name     string
		existing []client.Object
		failure  string
	}{
		{"a pool the import creates", nil, "writing PoolAllocation v4"},
		{"an existing pool the import marks", []client.Object{same, allocation(same, "")}, "marking addresses in PoolAllocation v4"},
	} {
		t.Run(c.name, func(t *testing.T) {
			w := spiderCluster(t, c.existing...)
			otherWriterFirst(t, w, func(a *v1.PoolAllocation) { a.State.Allocated, a.State.AllocatedIPCount = "10", 1 })

			_, err := w.run("spiderpool", false, "")

			wantErr(t, err, c.failure, "10.240.1.10 was handed out since the import planned", "stop pods from using the pool")
			if objs := w.underpoolObjects(); slices.ContainsFunc(objs, func(o string) bool { return strings.HasPrefix(o, "Endpoint") }) {
				t.Errorf("an Endpoint was written for an address another pod holds: %q", objs)
			}
		})
	}
}
