package store

import (
	"fmt"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/underpool/underpool/ipamd/api/v1"
)

// Records of our own writes for pods nobody asks about again (they went away) must not
// stay for the daemon's life: the map is pruned as writes go on.
func TestOwnWritesArePruned(t *testing.T) {
	e := NewEndpoints(nil, nil, nil)
	start := time.Now()
	for i := range 100 {
		key := client.ObjectKey{Namespace: "ns", Name: fmt.Sprintf("pod-%d", i)}
		e.remember(key, &v1.Endpoint{ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name}})
	}
	if n := e.OwnWrites(); n != 100 {
		t.Fatalf("%d own writes, want 100", n)
	}
	e.mu.Lock()
	e.pruneLocked(start.Add(2 * ownWriteTTL))
	e.mu.Unlock()
	if n := e.OwnWrites(); n != 0 {
		t.Fatalf("%d own writes left after their TTL, want 0", n)
	}
}
