package v1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// GroupVersion is the API group and version of every underpool kind.
var GroupVersion = schema.GroupVersion{Group: "underpool.io", Version: "v1"}

var (
	// SchemeBuilder registers the underpool kinds with a runtime.Scheme.
	SchemeBuilder = runtime.NewSchemeBuilder(addKnownTypes)
	// AddToScheme adds the underpool kinds to a scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)

// addKnownTypes keeps the API package's imports to apimachinery, so clients of the types
// do not pull in controller-runtime.
func addKnownTypes(s *runtime.Scheme) error {
	s.AddKnownTypes(GroupVersion, &IPPool{}, &IPPoolList{}, &Subnet{}, &SubnetList{},
		&ReservedIP{}, &ReservedIPList{}, &Endpoint{}, &EndpointList{}, &UnderlayNetwork{}, &UnderlayNetworkList{},
		&PoolAllocation{}, &PoolAllocationList{})
	metav1.AddToGroupVersion(s, GroupVersion)
	return nil
}
