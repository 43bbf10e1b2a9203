package importer_test

import (
	"errors"
	"testing"

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
