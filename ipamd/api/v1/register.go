package v1

import (
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/scheme"
)

// GroupVersion is the API group and version of every underpool kind.
var GroupVersion = schema.GroupVersion{Group: "underpool.io", Version: "v1"}

var (
	// SchemeBuilder registers the underpool kinds with a runtime.Scheme.
	SchemeBuilder = &scheme.Builder{GroupVersion: GroupVersion}
	// AddToScheme adds the underpool kinds to a scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)

func init() {
	SchemeBuilder.Register(&IPPool{}, &IPPoolList{}, &Subnet{}, &SubnetList{},
		&ReservedIP{}, &ReservedIPList{}, &Endpoint{}, &EndpointList{})
}
