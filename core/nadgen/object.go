package nadgen

import (
	"strconv"

	nadv1 "github.com/k8snetworkplumbingwg/network-attachment-definition-client/pkg/apis/k8s.cni.cncf.io/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/underpool/underpool/api/v1"
)

// NAD is the NetworkAttachmentDefinition the network renders in namespace ns: the
// rendered config, the label naming the network, the generation it was rendered from and
// the device plugin resource, controlled by the network (no ownerReference when the
// network has no UID: one read from a file, not the cluster).
func (r Rendered) NAD(net *v1.UnderlayNetwork, ns string) *nadv1.NetworkAttachmentDefinition {
	annotations := map[string]string{}
	if net.Generation > 0 { // a network read from a file has none yet
		annotations[v1.NetworkGenerationAnnotation] = strconv.FormatInt(net.Generation, 10)
	}
	for k, v := range r.Annotations {
		annotations[k] = v
	}
	nad := &nadv1.NetworkAttachmentDefinition{
		TypeMeta: metav1.TypeMeta{APIVersion: nadv1.SchemeGroupVersion.String(), Kind: "NetworkAttachmentDefinition"},
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: r.Name,
			Labels: map[string]string{v1.NetworkLabel: net.Name}, Annotations: annotations},
		Spec: nadv1.NetworkAttachmentDefinitionSpec{Config: r.Config},
	}
	if net.UID != "" {
		nad.OwnerReferences = []metav1.OwnerReference{OwnerReference(net)}
	}
	return nad
}

// OwnerReference makes the network a NAD's controller. blockOwnerDeletion stays off:
// setting it needs the right to update the network's finalizers, and nothing waits for
// NADs to go before the network may.
func OwnerReference(net *v1.UnderlayNetwork) metav1.OwnerReference {
	t := true
	return metav1.OwnerReference{APIVersion: v1.GroupVersion.String(), Kind: "UnderlayNetwork", Name: net.Name, UID: net.UID, Controller: &t}
}

// ManagedAnnotations are the NAD annotations the network decides; a user's own are kept.
var ManagedAnnotations = []string{v1.NetworkGenerationAnnotation, ResourceNameAnnotation}
