package deploy

import (
	"os/exec"
	"testing"

	"github.com/underpool/underpool/tests/harness"
)

func TestChartLints(t *testing.T) {
	helm, err := harness.Helm()
	if err != nil {
		t.Fatal(err)
	}
	for _, values := range []string{"", "testdata/values-all.yaml"} {
		args := []string{"lint", "--strict", chartDir()}
		if values != "" {
			args = append(args, "-f", values)
		}
		if out, err := exec.Command(helm, args...).CombinedOutput(); err != nil {
			t.Errorf("helm %v: %v\n%s", args, err, out)
		}
	}
}
