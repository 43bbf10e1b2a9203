package lifecycle

import (
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/core/apppool"
	"github.com/underpool/underpool/tests/e2e"
	"github.com/underpool/underpool/tests/harness"
	"github.com/underpool/underpool/tests/harness/kubelet"
)

// oldPodsGrace is how long the first incarnation's pods stay Terminating, holding their
// addresses and so their pool (its protection finalizer), after their Deployment goes.
const oldPodsGrace = 20

// A Deployment with an application pool is deleted; its pods ignore SIGTERM, so they stay
// Terminating for their grace period and their pool, deleted with the Deployment, stays
// terminating as long. A Deployment of the same name made meanwhile must not be left
// without a pool: once the old pods and the old pool are gone, the controller carves the
// new pool under the same name at once, and the new pods run with addresses from it. At
// no moment is an address held twice.
func TestWorkloadRecreatedWhileItsPoolTerminatesGetsAPool(t *testing.T) {
	v4, _, _ := e2e.NextSubnet()
	b := strings.TrimSuffix(v4, "0/24")
	subnet := e2e.NewSubnet(t, v1.SubnetSpec{Subnet: v4, Gateway: b + "1"}) // removed last, once its pools are gone
	lc := newLifecycle(t, lifecycleOptions{})
	onSubnet := map[string]string{v1.AnnotationSubnet: `{"ipv4":["` + subnet.Name + `"]}`}
	poolName := apppool.Workload{Kind: "Deployment", Namespace: lc.ns, Name: "web"}.PoolName(v1.IPv4)

	first := lc.deployment("web", 2, map[string]string{v1.AnnotationSubnet: onSubnet[v1.AnnotationSubnet], kubelet.IgnoreSIGTERMAnnotation: "true"})
	first.Spec.Template.Spec.TerminationGracePeriodSeconds = ptr.To[int64](oldPodsGrace)
	lc.create(first)
	old := lc.waitReady("web", 2)
	oldPool := e2e.FreshPool(t, poolName)
	for name := range old {
		if !strings.HasPrefix(lc.addresses()[name], b) {
			t.Fatalf("%s holds %q, want an address of %s", name, lc.addresses()[name], poolName)
		}
	}
	lc.requireInvariants(poolName)

	watch := e2e.WatchInvariants(t, e2e.HeldTwiceInCluster, lc.sandboxesSharing)
	lc.deleteAll(first)
	lc.eventually("pool "+poolName+" terminating while the old pods hold it", time.Minute, func() (bool, string) {
		p := e2e.FreshPool(t, poolName)
		terminating := 0
		for _, pod := range lc.pods("web") {
			if _, isOld := old[pod.Name]; isOld && pod.DeletionTimestamp != nil {
				terminating++
			}
		}
		return p.DeletionTimestamp != nil && terminating == 2, fmt.Sprintf("pool deleting=%t, %d old pods terminating", p.DeletionTimestamp != nil, terminating)
	})

	second := lc.deployment("web", 2, onSubnet)
	lc.create(second)
	// the old pods go after their grace period, then the old pool; the new pool follows
	// at once (without the fix: only when the Deployment next changes, minutes later)
	var fresh map[string]corev1.Pod
	lc.eventually("the new Deployment's pods running with addresses of a new pool "+poolName, oldPodsGrace*time.Second+90*time.Second, func() (bool, string) {
		p := &v1.IPPool{}
		if err := e2e.Suite.Client.Get(e2e.Ctx(t), client.ObjectKey{Name: poolName}, p); err != nil || p.UID == oldPool.UID || p.DeletionTimestamp != nil {
			return false, fmt.Sprintf("pool %s: %v (old incarnation %t, deleting %t)", poolName, err, p.UID == oldPool.UID, p.DeletionTimestamp != nil)
		}
		fresh = map[string]corev1.Pod{}
		addrs := lc.addresses()
		var states []string
		for _, pod := range lc.pods("web") {
			states = append(states, fmt.Sprintf("%s:%s/%q", pod.Name, pod.Status.Phase, addrs[pod.Name]))
			if _, isOld := old[pod.Name]; !isOld && pod.DeletionTimestamp == nil && harness.PodReady(&pod) && addrs[pod.Name] != "" && e2e.PoolHolds(t, poolName, addrs[pod.Name]) {
				fresh[pod.Name] = pod
			}
		}
		return len(fresh) == 2 && len(states) == 2, strings.Join(states, " ")
	})
	watch.Stop()
	t.Logf("re-creation watched over %d samples", watch.Samples)
	lc.requireInvariants(poolName)

	lc.deleteAll(second)
	lc.eventually("application pool "+poolName+" to go with its workload", 2*time.Minute, func() (bool, string) {
		err := e2e.Suite.Client.Get(e2e.Ctx(t), types.NamespacedName{Name: poolName}, &v1.IPPool{})
		return e2e.IsNotFound(err), fmt.Sprintf("get: %v", err)
	})
	lc.requireNothingLeft()
}
