package v1

import (
	"encoding/json"
	"fmt"
	"strings"
)

// AnnotationNetworks is Multus' list of the networks a pod attaches besides the cluster
// network: "a,ns/b@net5" or JSON [{"name":"a","interface":"net5"}].
const AnnotationNetworks = "k8s.v1.cni.cncf.io/networks"

// ParseDefaultRouteNIC reads the default-route-nic annotation: "" when absent. The value
// must be an interface name the pod will have: eth0, or one Multus gives it from
// k8s.v1.cni.cncf.io/networks (each element's interface, else net1, net2, ... by
// position), so that a typo fails the pod's ADD instead of leaving it without a default
// route.
func ParseDefaultRouteNIC(annotations map[string]string) (string, error) {
	nic, ok := annotations[AnnotationDefaultRouteNIC]
	if !ok {
		return "", nil
	}
	if err := validInterfaceName(nic); err != nil {
		return "", fmt.Errorf("annotation %s: %v: name one of the pod's interfaces, for example net1", AnnotationDefaultRouteNIC, err)
	}
	names, known := podInterfaces(annotations[AnnotationNetworks])
	if !known {
		return nic, nil // an annotation Multus cannot read fails the pod there, with its own words
	}
	for _, n := range names {
		if n == nic {
			return nic, nil
		}
	}
	return "", fmt.Errorf("annotation %s names %q, which is none of the pod's interfaces (%s, from %s): name one of them",
		AnnotationDefaultRouteNIC, nic, strings.Join(names, ", "), AnnotationNetworks)
}

// validInterfaceName is the kernel's rule (dev_valid_name).
func validInterfaceName(s string) error {
	switch {
	case s == "":
		return fmt.Errorf("empty")
	case len(s) > 15:
		return fmt.Errorf("%q is longer than the kernel's 15 bytes", s)
	case s == "." || s == ".." || strings.ContainsAny(s, "/: \t\n"):
		return fmt.Errorf("%q is not an interface name", s)
	}
	return nil
}

// podInterfaces names the interfaces a pod gets: eth0 and one per element of Multus'
// networks annotation. known is false when the annotation is neither of Multus' forms.
func podInterfaces(networks string) (names []string, known bool) {
	names = []string{"eth0"}
	networks = strings.TrimSpace(networks)
	if networks == "" {
		return names, true
	}
	if strings.HasPrefix(networks, "[") {
		var elems []struct {
			Interface string `json:"interface"`
		}
		if err := json.Unmarshal([]byte(networks), &elems); err != nil {
			return nil, false
		}
		for i, e := range elems {
			names = append(names, orNetN(e.Interface, i))
		}
		return names, true
	}
	for i, e := range strings.Split(networks, ",") {
		_, ifName, _ := strings.Cut(strings.TrimSpace(e), "@")
		names = append(names, orNetN(ifName, i))
	}
	return names, true
}

// orNetN is ifName, or Multus' name for the i-th (0-based) network without one.
func orNetN(ifName string, i int) string {
	if ifName != "" {
		return ifName
	}
	return fmt.Sprintf("net%d", i+1)
}
