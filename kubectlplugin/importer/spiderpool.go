package importer

import (
	"context"
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/underpool/underpool/api/v1"
)

// Spiderpool's kinds (spiderpool.spidernet.io/v2beta1), read as unstructured.
var (
	spiderGV          = schema.GroupVersion{Group: "spiderpool.spidernet.io", Version: "v2beta1"}
	spiderIPPoolGVK   = spiderGV.WithKind("SpiderIPPool")
	spiderSubnetGVK   = spiderGV.WithKind("SpiderSubnet")
	spiderReservedGVK = spiderGV.WithKind("SpiderReservedIP")
	spiderEndpointGVK = spiderGV.WithKind("SpiderEndpoint")
)

// spiderPoolSpec holds the fields of SpiderIPPool and SpiderSubnet specs the import reads.
type spiderPoolSpec struct {
	Subnet            string                `json:"subnet"`
	IPs               []string              `json:"ips"`
	ExcludeIPs        []string              `json:"excludeIPs"`
	Gateway           *string               `json:"gateway"`
	Vlan              *int64                `json:"vlan"`
	Routes            []v1.Route            `json:"routes"`
	PodAffinity       *metav1.LabelSelector `json:"podAffinity"`
	NamespaceAffinity *metav1.LabelSelector `json:"namespaceAffinity"`
	NamespaceName     []string              `json:"namespaceName"`
	NodeAffinity      *metav1.LabelSelector `json:"nodeAffinity"`
	NodeName          []string              `json:"nodeName"`
	MultusName        []string              `json:"multusName"`
	Default           *bool                 `json:"default"`
	Disable           *bool                 `json:"disable"`
}

// spiderObjects are Spiderpool's objects, one list per kind.
type spiderObjects struct {
	subnets, pools, reserved, endpoints []unstructured.Unstructured
}

// spiderReader turns Spiderpool's objects into the peer state, one kind at a time: the
// subnets, the pools (and the addresses their status marks), the endpoints (node, UID and
// the addresses no pool marks yet), then the reserved IPs.
type spiderReader struct {
	st     *peerState
	prefix string
	poolOf map[string]string // SpiderIPPool name -> IPPool name
}

func readSpiderpool(ctx context.Context, c client.Reader, prefix string) (*peerState, error) {
	objs, err := listSpiderpool(ctx, c)
	if err != nil {
		return nil, err
	}
	r := &spiderReader{st: &peerState{}, prefix: prefix, poolOf: map[string]string{}}
	for _, step := range []func() error{
		func() error { return r.subnets(objs.subnets) },
		func() error { return r.ipPools(objs.pools) },
		func() error { return r.endpoints(objs.endpoints) },
		func() error { return r.reservedIPs(objs.reserved) },
	} {
		if err := step(); err != nil {
			return nil, err
		}
	}
	return r.st, nil
}

func listSpiderpool(ctx context.Context, c client.Reader) (*spiderObjects, error) {
	objs := &spiderObjects{}
	for _, l := range []struct {
		gvk schema.GroupVersionKind
		to  *[]unstructured.Unstructured
	}{{spiderSubnetGVK, &objs.subnets}, {spiderIPPoolGVK, &objs.pools}, {spiderReservedGVK, &objs.reserved}, {spiderEndpointGVK, &objs.endpoints}} {
		items, err := listPeer(ctx, c, l.gvk)
		if err != nil {
			return nil, err
		}
		*l.to = items
	}
	if len(objs.subnets)+len(objs.pools)+len(objs.reserved) == 0 {
		return nil, fmt.Errorf("found no SpiderSubnet, SpiderIPPool or SpiderReservedIP (%s): is Spiderpool installed in this cluster (kubectl get spiderippools)?", spiderGV)
	}
	return objs, nil
}
