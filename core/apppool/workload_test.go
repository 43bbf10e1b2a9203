package apppool

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/utils/ptr"

	v1 "github.com/underpool/underpool/api/v1"
)

func controlled(apiVersion, kind, name string, labels map[string]string) *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Labels: labels,
		OwnerReferences: []metav1.OwnerReference{{APIVersion: apiVersion, Kind: kind, Name: name, Controller: ptr.To(true)}}}}
}

// Each kind's pod finds the workload whose pool it uses, reading the object between
// them only where the pod cannot tell: a ReplicaSet without the Deployment's hash, a Job.
func TestEachKindsPodFindsItsWorkload(t *testing.T) {
	hash := map[string]string{"pod-template-hash": "5d9f"}
	cronJob := &metav1.OwnerReference{APIVersion: "batch/v1", Kind: "CronJob", Name: "nightly", Controller: ptr.To(true)}
	rollout := &metav1.OwnerReference{APIVersion: "argoproj.io/v1alpha1", Kind: "Rollout", Name: "canary", Controller: ptr.To(true)}
	for _, c := range []struct {
		what         string
		pod          *corev1.Pod
		intermediate string // the kind to read, "" for none
		above        *metav1.OwnerReference
		want         Workload
	}{
		{"Deployment", controlled("apps/v1", "ReplicaSet", "web-5d9f", hash), "", nil, Workload{"Deployment", "ns", "web"}},
		{"StatefulSet", controlled("apps/v1", "StatefulSet", "db", nil), "", nil, Workload{"StatefulSet", "ns", "db"}},
		{"DaemonSet", controlled("apps/v1", "DaemonSet", "agent", nil), "", nil, Workload{"DaemonSet", "ns", "agent"}},
		{"bare ReplicaSet", controlled("apps/v1", "ReplicaSet", "rs", nil), "ReplicaSet", nil, Workload{"ReplicaSet", "ns", "rs"}},
		{"ReplicaSet of another controller", controlled("apps/v1", "ReplicaSet", "canary-7f", map[string]string{"rollouts-pod-template-hash": "7f"}),
			"ReplicaSet", rollout, Workload{"Rollout.argoproj.io", "ns", "canary"}},
		{"Job", controlled("batch/v1", "Job", "once", nil), "Job", nil, Workload{"Job", "ns", "once"}},
		{"CronJob", controlled("batch/v1", "Job", "nightly-29000000", nil), "Job", cronJob, Workload{"CronJob", "ns", "nightly"}},
		{"third-party", controlled("example.com/v1", "Widget", "w", nil), "", nil, Workload{"Widget.example.com", "ns", "w"}},
		{"a Deployment of another group", controlled("example.com/v1", "Deployment", "d", nil), "", nil, Workload{"Deployment.example.com", "ns", "d"}},
		{"ReplicationController (core group)", controlled("v1", "ReplicationController", "rc", nil), "", nil, Workload{"ReplicationController", "ns", "rc"}},
	} {
		kind, _, need := Intermediate(c.pod)
		if kind != c.intermediate || need != (c.intermediate != "") {
			t.Errorf("%s: reads %q (%t), want %q", c.what, kind, need, c.intermediate)
		}
		if w, ok := WorkloadOf(c.pod, c.above); !ok || w != c.want {
			t.Errorf("%s: workload %+v (%t), want %+v", c.what, w, ok, c.want)
		}
	}
	if _, ok := WorkloadOf(&corev1.Pod{}, nil); ok {
		t.Error("a pod without a controller has a workload")
	}
}

// A workload's kind goes to its pool's name and back to an API group and kind: the
// controller looks up a third-party kind's resource from it.
func TestWorkloadKindRoundTripsToItsGroupKind(t *testing.T) {
	for kind, want := range map[string]schema.GroupKind{
		"CronJob":               {Group: "batch", Kind: "CronJob"},
		"DaemonSet":             {Group: "apps", Kind: "DaemonSet"},
		"Widget.example.com":    {Group: "example.com", Kind: "Widget"},
		"ReplicationController": {Kind: "ReplicationController"},
	} {
		w := Workload{Kind: kind, Namespace: "ns", Name: "n"}
		if got := w.GroupKind(); got != want {
			t.Errorf("%s: %v, want %v", kind, got, want)
		}
		if w.Builtin() != (want.Group == "apps" || want.Group == "batch") {
			t.Errorf("%s: builtin %t", kind, w.Builtin())
		}
		pool := &v1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: w.PoolName(v1.IPv4), Annotations: map[string]string{AnnotationOwner: w.String()}}}
		if back, ok := OwnerOf(pool); !ok || back != w {
			t.Errorf("%s: owner annotation gives back %+v", kind, back)
		}
		if errs := validation.IsDNS1123Subdomain(pool.Name); len(errs) > 0 {
			t.Errorf("%s: pool name %q: %v", kind, pool.Name, errs)
		}
	}
}
