package v1

import (
	"strings"
	"testing"
)

// TestAnnotationDefaultRouteNIC: the value must be an interface the pod will have, named
// as Multus names them; every refusal names the key and what to write.
func TestAnnotationDefaultRouteNIC(t *testing.T) {
	for _, c := range []struct {
		value, networks, want, err string
	}{
		{value: "eth0", want: "eth0"},
		{value: "net2", networks: "macvlan-a, ns/macvlan-b", want: "net2"},
		{value: "fast0", networks: "ns/macvlan-a@fast0,macvlan-b", want: "fast0"},
		{value: "net2", networks: `[{"name":"a","interface":"net1"},{"name":"b","namespace":"ns"}]`, want: "net2"},
		{value: "net9", networks: "a,b", err: `names "net9", which is none of the pod's interfaces (eth0, net1, net2`},
		{value: "net1", networks: "a@fast0", err: "eth0, fast0"},
		{value: "", err: "empty"},
		{value: "a/b", err: `"a/b" is not an interface name`},
		{value: "averyveryverylongname", err: "longer than the kernel's 15 bytes"},
		{value: "net1", networks: "[not json", want: "net1"}, // Multus refuses the pod itself
	} {
		ann := map[string]string{AnnotationDefaultRouteNIC: c.value}
		if c.networks != "" {
			ann[AnnotationNetworks] = c.networks
		}
		got, err := ParseDefaultRouteNIC(ann)
		switch {
		case c.err == "" && (err != nil || got != c.want):
			t.Errorf("%q with networks %q: got %q, %v; want %q", c.value, c.networks, got, err, c.want)
		case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err) || !strings.Contains(err.Error(), AnnotationDefaultRouteNIC)):
			t.Errorf("%q with networks %q: got %q, %v; want an error naming the key and %q", c.value, c.networks, got, err, c.err)
		}
	}
	if got, err := ParseDefaultRouteNIC(map[string]string{}); got != "" || err != nil {
		t.Errorf("absent: got %q, %v", got, err)
	}
}
