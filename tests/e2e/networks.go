package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/rand"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/underpool/underpool/api/v1"
)

// NewUnderlayNetwork creates an UnderlayNetwork (named net-<random>) and deletes it when
// the test ends, unless the test did.
func NewUnderlayNetwork(t *testing.T, spec v1.UnderlayNetworkSpec) *v1.UnderlayNetwork {
	t.Helper()
	net := &v1.UnderlayNetwork{ObjectMeta: metav1.ObjectMeta{Name: "net-" + rand.String(6)}, Spec: spec}
	create(t, net)
	return net
}

// GetNAD reads a NetworkAttachmentDefinition as it is in the API (nil, err when absent).
func GetNAD(t *testing.T, ns, name string) (*unstructured.Unstructured, error) {
	t.Helper()
	nad := &unstructured.Unstructured{}
	nad.SetGroupVersionKind(nadKind)
	if err := Suite.Client.Get(Ctx(t), client.ObjectKey{Namespace: ns, Name: name}, nad); err != nil {
		return nil, err
	}
	return nad, nil
}

// NADConfigOf is the config a NetworkAttachmentDefinition holds.
func NADConfigOf(nad *unstructured.Unstructured) string {
	conf, _, _ := unstructured.NestedString(nad.Object, "spec", "config")
	return conf
}

// SetNADConfig overwrites a NetworkAttachmentDefinition's config, as a hand edit would.
func SetNADConfig(t *testing.T, ns, name, config string) {
	t.Helper()
	nad, err := GetNAD(t, ns, name)
	if err != nil {
		t.Fatal(err)
	}
	if err := unstructured.SetNestedField(nad.Object, config, "spec", "config"); err != nil {
		t.Fatal(err)
	}
	if err := Suite.Client.Update(Ctx(t), nad); err != nil {
		t.Fatalf("editing NAD %s/%s: %v", ns, name, err)
	}
}

// WaitNetworkReady waits until the network's Ready condition, for its current generation,
// has status and reason; it returns the network then.
func WaitNetworkReady(t *testing.T, name string, status metav1.ConditionStatus, reason string) *v1.UnderlayNetwork {
	t.Helper()
	net := &v1.UnderlayNetwork{}
	Eventually(t, fmt.Sprintf("UnderlayNetwork %s Ready=%s (%s)", name, status, reason), time.Minute, func() (bool, string) {
		if err := Suite.Client.Get(context.Background(), client.ObjectKey{Name: name}, net); err != nil {
			return false, err.Error()
		}
		c := meta.FindStatusCondition(net.Status.Conditions, v1.NetworkReady)
		if c == nil {
			return false, "no Ready condition"
		}
		return c.Status == status && c.Reason == reason && c.ObservedGeneration == net.Generation,
			fmt.Sprintf("Ready=%s %s at generation %d of %d: %s", c.Status, c.Reason, c.ObservedGeneration, net.Generation, c.Message)
	})
	return net
}
