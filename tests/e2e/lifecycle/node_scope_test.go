package lifecycle

import (
	"context"
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/tests/e2e"
)

// An ipamd's watch traffic and cache follow its own node, not the cluster: pods and
// Endpoints made on other nodes deliver it nothing (underpool_ipamd_watch_events_total),
// while one of its own node's arrives. Events of one resource come in order on one watch,
// so once the own node's object is counted, the others would have been counted before it.
func TestIpamdWatchesOnlyItsNode(t *testing.T) {
	const node, other = "scope-node", "scope-other"
	if err := e2e.Suite.Client.Create(e2e.Ctx(t), &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: other}}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = e2e.Suite.Client.Delete(context.Background(), &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: other}})
	})
	_, health := e2e.NodeWithIpamd(t, node)
	ns := e2e.NewNamespace(t)
	events := func(resource string) float64 {
		v, _ := e2e.Scrape(t, health).Get("underpool_ipamd_watch_events_total", "resource", resource)
		return v
	}
	before := map[string]float64{"pods": events("pods"), "endpoints": events("endpoints")}

	endpoint := func(name, on string) *v1.Endpoint {
		return &v1.Endpoint{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
			Status: v1.EndpointStatus{Node: on, PodUID: "uid-" + name}}
	}
	for i := range 20 {
		name := fmt.Sprintf("elsewhere-%d", i)
		e2e.NewPodOn(t, other, ns, name, nil, nil, nil)
		if err := e2e.Suite.Client.Create(e2e.Ctx(t), endpoint(name, other)); err != nil {
			t.Fatal(err)
		}
	}
	e2e.NewPodOn(t, node, ns, "here", nil, nil, nil)
	if err := e2e.Suite.Client.Create(e2e.Ctx(t), endpoint("here", node)); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for resource, was := range before {
		for events(resource) == was && time.Now().Before(deadline) {
			time.Sleep(100 * time.Millisecond)
		}
		// its own node's object is 1 (an update to it by a controller would add one);
		// a watch of the whole cluster would have delivered the 20 others too
		if got := events(resource) - was; got < 1 || got >= 20 {
			t.Errorf("%s watch events while 20 were made on %s and 1 on %s: %v, want its own node's only", resource, other, node, got)
		}
	}
}
