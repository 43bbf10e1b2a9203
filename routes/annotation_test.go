package routes

import (
	"strings"
	"testing"
)

func TestParseAnnotation(t *testing.T) {
	v := `[{"dst":"10.0.0.0/8","gw":"10.250.1.1","interface":"net1"},{"dst":"192.168.0.0/16"},{"dst":"172.16.0.0/12","interface":"net2"}]`
	got, err := ParseAnnotation(v, "net1")
	if err != nil || len(got) != 2 || got[0].Dst.String() != "10.0.0.0/8" || got[1].Dst.String() != "192.168.0.0/16" {
		t.Fatalf("net1 routes = %v, %v", got, err)
	}
	for _, bad := range []string{`{`, `[{"dst":"10.0.0.0"}]`, `[{"dst":"10.0.0.0/8","gw":"nope"}]`} {
		if _, err := ParseAnnotation(bad, "net1"); err == nil || !strings.Contains(err.Error(), Annotation) {
			t.Errorf("ParseAnnotation(%s) = %v, want an error naming %s", bad, err, Annotation)
		}
	}
}
