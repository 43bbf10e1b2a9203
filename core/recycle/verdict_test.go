package recycle

import (
	"errors"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	v1 "github.com/underpool/underpool/api/v1"
)

func endpoint(kind string, itfs ...v1.EndpointInterface) *v1.Endpoint {
	ep := &v1.Endpoint{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "web-1"}}
	ep.Status.OwnerKind, ep.Status.OwnerName = kind, "web"
	ep.Status.Interfaces = itfs
	return ep
}

func attachment(cid, uid string, age time.Duration) v1.EndpointInterface {
	return v1.EndpointInterface{ContainerID: cid, Interface: "net1", Network: "ns/macvlan", PodUID: uid,
		Created: metav1.NewTime(time.Unix(1_000_000, 0).Add(-age))}
}

func pod(uid string, phase corev1.PodPhase) *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{UID: types.UID(uid)}, Status: corev1.PodStatus{Phase: phase}}
}

// TestJudgeFreesOnlyWhatProvablyHasNoOwner walks every branch of the verdict: while the
// pod the attachment was given to exists, nothing is recycled, whatever its phase.
func TestJudgeFreesOnlyWhatProvablyHasNoOwner(t *testing.T) {
	old := attachment("c-old", "u1", time.Hour)
	newer := attachment("c-new", "u1", time.Minute)
	wanted := func(b bool) func() (bool, error) { return func() (bool, error) { return b, nil } }
	for _, c := range []struct {
		name   string
		ep     *v1.Endpoint
		pod    *corev1.Pod
		wanted bool
		want   string
	}{
		{"a deleted pod's attachment", endpoint("Deployment", old), nil, false, ReasonPodDeleted},
		{"the live pod's attachment, even failed", endpoint("Deployment", old), pod("u1", corev1.PodFailed), false, ""},
		{"an attachment recorded without a UID", endpoint("Deployment", attachment("c", "", time.Hour)), pod("u2", corev1.PodRunning), false, ""},
		{"a replaced incarnation's", endpoint("Deployment", old), pod("u2", corev1.PodPending), false, ReasonPodReplaced},
		{"a sandbox the pod replaced", endpoint("Deployment", old, newer), pod("u1", corev1.PodRunning), false, ReasonSandboxReplaced},
		{"a gone StatefulSet pod whose ordinal is wanted", endpoint("StatefulSet", old), nil, true, ""},
		{"a gone StatefulSet pod whose ordinal is not", endpoint("StatefulSet", old), nil, false, ReasonStatefulSetGone},
		{"a StatefulSet successor not yet attached", endpoint("StatefulSet", old), pod("u2", corev1.PodPending), false, ""},
		{"a StatefulSet successor running without them", endpoint("StatefulSet", old), pod("u2", corev1.PodRunning), false, ReasonSuccessorDidNot},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := Judge(c.ep, &c.ep.Status.Interfaces[0], c.pod, wanted(c.wanted))
			if err != nil || got != c.want {
				t.Fatalf("Judge = %q, %v; want %q", got, err, c.want)
			}
		})
	}
}

// TestJudgeKeepsWhatItCannotReadTheSetOf: an error reading the StatefulSet is no verdict.
func TestJudgeKeepsWhatItCannotReadTheSetOf(t *testing.T) {
	ep := endpoint("StatefulSet", attachment("c", "u1", time.Hour))
	boom := errors.New("apiserver unavailable")
	got, err := Judge(ep, &ep.Status.Interfaces[0], nil, func() (bool, error) { return false, boom })
	if got != "" || !errors.Is(err, boom) {
		t.Fatalf("Judge = %q, %v; want no verdict and the read's error", got, err)
	}
}

// TestADetachedOrOlderSandboxSupersedesNothing: only a newer, attached sandbox of the same
// incarnation on the same interface and network replaces one.
func TestADetachedOrOlderSandboxSupersedesNothing(t *testing.T) {
	old, newer := attachment("c-old", "u1", time.Hour), attachment("c-new", "u1", time.Minute)
	otherNet := newer
	otherNet.Network = "ns/other"
	detached := newer
	detached.Detached = &metav1.Time{Time: time.Unix(1_000_000, 0)}
	for name, ep := range map[string]*v1.Endpoint{
		"on another network": endpoint("Deployment", old, otherNet),
		"detached":           endpoint("Deployment", old, detached),
	} {
		if got := SupersededBy(ep, &ep.Status.Interfaces[0], "u1"); got != nil {
			t.Errorf("%s: SupersededBy = %s, want nil", name, got.ContainerID)
		}
	}
	ep := endpoint("Deployment", old, newer)
	if got := SupersededBy(ep, &ep.Status.Interfaces[1], "u1"); got != nil {
		t.Errorf("the newer sandbox is superseded by the older %s", got.ContainerID)
	}
}

// TestOrdinalsFollowTheSpec: start and replicas from the spec, defaults as the API's.
// An imported attachment records no network: a newer sandbox of the same pod on its
// interface supersedes it whatever network that one names; the reverse never holds.
func TestAnImportedAttachmentIsSupersededOnItsInterfaceByAnyNetwork(t *testing.T) {
	imported := attachment(v1.UnknownSandboxID("u1"), "u1", time.Hour)
	imported.Network = ""
	newer := attachment("c-new", "u1", time.Minute)
	ep := endpoint("Deployment", imported, newer)
	if got := SupersededBy(ep, &ep.Status.Interfaces[0], "u1"); got == nil || got.ContainerID != "c-new" {
		t.Errorf("SupersededBy(imported) = %v, want the newer sandbox", got)
	}
	older := attachment("c-old", "u1", 2*time.Hour)
	ep = endpoint("Deployment", older, imported)
	if got := SupersededBy(ep, &ep.Status.Interfaces[0], "u1"); got != nil {
		t.Errorf("an attachment with a network was superseded by one recording none: %s", got.ContainerID)
	}
}

func TestOrdinalsFollowTheSpec(t *testing.T) {
	n, err := OrdinalOf("web-12", "web")
	if err != nil || n != 12 {
		t.Fatalf("OrdinalOf = %d, %v", n, err)
	}
	if _, err := OrdinalOf("db-1", "web"); err == nil {
		t.Fatal("a pod not named after the set has an ordinal")
	}
	o := Ordinals{Start: 5, Replicas: 2}
	if o.Wants(4) || !o.Wants(5) || !o.Wants(6) || o.Wants(7) {
		t.Fatalf("%+v wants the wrong ordinals", o)
	}
}
