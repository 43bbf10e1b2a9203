package importer_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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
		"already written: Subnet net, ReservedIP keep, IPPool v4 (status.allocated 10)", "run the import again to finish")

	w.fail = nil
	rep := w.mustRun("spiderpool", "")
	wantSame(t, "changes of the re-run", changes(rep), []string{"unchanged Subnet net", "unchanged ReservedIP keep", "unchanged IPPool v4", "create Endpoint ns/a"})
}

// otherWriterFirst makes another writer update each IPPool's status once, just before the
// import's own status write of it: the import's write then conflicts.
func otherWriterFirst(t *testing.T, w *world, change func(*v1.IPPool)) {
	done := map[string]bool{}
	w.beforeStatus = func(c client.Client, obj client.Object) {
		if _, ok := obj.(*v1.IPPool); !ok || done[obj.GetName()] {
			return
		}
		done[obj.GetName()] = true
		cur := &v1.IPPool{}
		if err := c.Get(context.Background(), client.ObjectKeyFromObject(obj), cur); err != nil {
			t.Fatal(err)
		}
		change(cur)
		if err := c.Status().Update(context.Background(), cur); err != nil {
			t.Fatal(err)
		}
	}
}

// The controller writes a new pool's status (its conditions) as soon as it sees it: the
// import's status write then conflicts, and is made again on a fresh read.
func TestAPoolStatusTheControllerWroteFirstIsReadAgain(t *testing.T) {
	w := spiderCluster(t)
	otherWriterFirst(t, w, func(p *v1.IPPool) {
		p.Status.Conditions = []metav1.Condition{{Type: "Ready", Status: metav1.ConditionTrue, Reason: "Valid", LastTransitionTime: metav1.Now()}}
	})

	w.mustRun("spiderpool", "")

	if p := w.pool("v4"); p.Status.Allocated != "10" || p.Status.AllocatedIPCount != 1 || len(p.Status.Conditions) != 1 {
		t.Errorf("IPPool v4 status = %+v, want allocated 10 beside the controller's condition", p.Status)
	}
}

// An address handed out between the plan and the write (a pod that ipamd served from the
// pool meanwhile) would then have two holders: the import refuses, naming it, whether it
// creates the pool or marks an existing one.
func TestAnAddressHandedOutSinceThePlanRefusesTheImport(t *testing.T) {
	same := ipPool("v4", v1.IPPoolSpec{Subnet: "10.240.1.0/24", IPs: []string{"10.240.1.10-10.240.1.50"}, Gateway: "10.240.1.1"}, "")
	for _, c := range []struct {
		name     string
		existing []client.Object
		failure  string
	}{
		{"a pool the import creates", nil, "writing IPPool v4 status"},
		{"an existing pool the import marks", []client.Object{same}, "marking addresses in IPPool v4"},
	} {
		t.Run(c.name, func(t *testing.T) {
			w := spiderCluster(t, c.existing...)
			otherWriterFirst(t, w, func(p *v1.IPPool) { p.Status.Allocated, p.Status.AllocatedIPCount = "10", 1 })

			_, err := w.run("spiderpool", false, "")

			wantErr(t, err, c.failure, "10.240.1.10 was handed out since the import planned", "stop pods from using the pool")
			if objs := w.underpoolObjects(); slices.ContainsFunc(objs, func(o string) bool { return strings.HasPrefix(o, "Endpoint") }) {
				t.Errorf("an Endpoint was written for an address another pod holds: %q", objs)
			}
		})
	}
}
